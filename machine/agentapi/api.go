// Package agentapi is the host agent's control API: small HTTP/JSON on a per-machine unix
// socket. The CLI and the tray app talk only to this and to the engine API.
package agentapi

import (
	"time"

	"github.com/skiff-dev/skiff/forward"
	"github.com/skiff-dev/skiff/vmm"
)

// Paths of the control API.
const (
	PathState   = "/v1/state"
	PathStop    = "/v1/stop"    // POST, body StopRequest
	PathEvents  = "/v1/events"  // GET, a stream of Event JSON lines
	PathConnect = "/v1/connect" // POST ?service=NAME, upgraded to a raw stream (Upgrade: skiff-stream)
	PathControl = "/v1/control" // POST, body forward.ControlRequest, relayed to the guest agent
)

// Phase is what the agent itself knows about the machine; the machine's State adds what
// only an outside observer can see (a dead agent reads as crashed).
type Phase string

const (
	PhaseStarting Phase = "starting"
	PhaseRunning  Phase = "running"
	PhaseStopping Phase = "stopping"
)

// Forward is one published port and whether its host end is bound.
type Forward = forward.Forward

// State is the agent's answer to GET /v1/state. It is computed on each request.
type State struct {
	Name     string            `json:"name"`
	Phase    Phase             `json:"phase"`
	AgentPID int               `json:"agentPID"`
	VMPID    int               `json:"vmPID,omitempty"`
	Backend  string            `json:"backend"`
	VM       map[string]string `json:"vm,omitempty"` // backend facts: accelerator and why
	// Transport is how the host reaches the guest agent: "vsock" (the VM's socket device)
	// or "network" (TCP through the user-mode network).
	Transport   string     `json:"transport,omitempty"`
	StartedAt   time.Time  `json:"startedAt"`
	VMStartedAt *time.Time `json:"vmStartedAt,omitempty"` // when the hypervisor was asked to boot
	ReadyAt     *time.Time `json:"readyAt,omitempty"`
	GuestBootMS int64      `json:"guestBootMillis,omitempty"`
	EngineAPI   string     `json:"engineAPI,omitempty"`
	Engine      string     `json:"engine"`
	EngineSock  string     `json:"engineSocket"`
	Forwards    []Forward  `json:"forwards"`
	Warnings    []string   `json:"warnings,omitempty"`
	NetRxBytes  uint64     `json:"netRxBytes"`
	NetTxBytes  uint64     `json:"netTxBytes"`
	Boot        *Boot      `json:"boot,omitempty"`
	// Memory is the VM's memory as the host sees it, and the balloon's (computed now).
	Memory *Memory `json:"memory,omitempty"`
	// Features is what the backend, and the running VM, can do (warm start and why not).
	Features vmm.FeatureSet `json:"features"`
	// FileEvents is set while host file changes are raised in the guest.
	FileEvents *FileEvents `json:"fileEvents,omitempty"`
}

// FileEvents is the state of raising host file changes in the guest (forward/fsevents).
type FileEvents struct {
	// HostWatches is how many host folders are watched: those guest processes watch.
	HostWatches int `json:"hostWatches"`
}

// Boot says how the machine came up this time.
type Boot struct {
	// Warm is true when the VM resumed from its saved state instead of booting.
	Warm bool `json:"warm"`
	// Reason says why a saved state was not used (empty when there was none).
	Reason string `json:"reason,omitempty"`
	// Steps are how long the parts of a warm start took, in order: the restore, then the
	// guest's steps, which ran side by side, and the stream to the guest and back.
	Steps []forward.Step `json:"steps,omitempty"`
}

// StopRequest asks the agent to stop the machine.
type StopRequest struct {
	// Force skips the guest shutdown and kills the VM.
	Force bool `json:"force,omitempty"`
	// Cold shuts the guest down instead of suspending it, and discards any saved state.
	Cold bool `json:"cold,omitempty"`
	// Timeout bounds the graceful shutdown before it is forced.
	Timeout time.Duration `json:"timeout,omitempty"`
}

// StopResult says how the machine stopped.
type StopResult struct {
	// Suspended is true when the VM's state was saved for a warm start.
	Suspended bool `json:"suspended"`
	// NotSuspended says why a stop that could have suspended shut down cold instead.
	NotSuspended string `json:"notSuspended,omitempty"`
}

// Types of event.
const (
	EventPhase    = "phase"    // the phase changed
	EventForwards = "forwards" // the published ports changed
	// EventError: the agent is exiting because of Message (a failed boot, a crash).
	EventError = "error"
)

// Event is one line of the events stream. Every event carries the phase at the time, so a
// reader that missed some (a slow one drops events rather than stall the agent) still
// knows where the machine is.
type Event struct {
	Time     time.Time `json:"time"`
	Type     string    `json:"type"`
	Phase    Phase     `json:"phase,omitempty"`
	Forwards []Forward `json:"forwards,omitempty"`
	Message  string    `json:"message,omitempty"`
}
