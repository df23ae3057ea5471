package machine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/skiff-dev/skiff/images"
	"github.com/skiff-dev/skiff/installer/hostenv"
	"github.com/skiff-dev/skiff/machine/agentapi"
	"github.com/skiff-dev/skiff/machine/errdefs"
	"github.com/skiff-dev/skiff/vmm"
)

// Manager runs the lifecycle of the machines of one home: init, start, stop, rm, set,
// list and inspect, with every decision (which state allows what, what a removal undoes)
// made here, so that the CLI and the tray behave alike. Callers only parse and print.
type Manager struct {
	Home Home
	// Backend returns the backend a spec names (machine/backends.Lookup on this OS).
	Backend func(name string) (vmm.Backend, error)
	// Agent is the command line that runs a machine's host agent, its name appended:
	// the skiff executable and "hostagent".
	Agent []string
	// Autostart turns a machine's login hook on or off (installer.ApplyAutostart); with
	// nil, Set refuses to change it.
	Autostart func(ctx context.Context, name string, enabled bool) error
}

// Machine is the directory and spec of the machine called name, which must exist.
func (m *Manager) Machine(name string) (Dir, *Spec, error) {
	if err := ValidateName(name); err != nil {
		return Dir{}, nil, ErrInvalidf("%v", err)
	}
	d := m.Home.Dir(name)
	s, err := d.Spec()
	return d, s, err
}

// ErrInvalidf is an ErrInvalid error in its own words.
func ErrInvalidf(format string, args ...any) error {
	return &Error{Class: ErrInvalid, Detail: fmt.Sprintf(format, args...)}
}

// InitOptions say where a new machine's image comes from.
type InitOptions struct {
	// Image is the guest image: a directory, a manifest, or an http(s) URL with
	// @sha256:DIGEST.
	Image string
	// Progress receives the download's progress; nil discards it.
	Progress io.Writer
}

// Init creates the machine s describes: it checks the spec against this host, installs
// the image (what the backend needs of it) and makes the machine's directory.
func (m *Manager) Init(ctx context.Context, s *Spec, o InitOptions) (*images.Installed, error) {
	if err := ValidateName(s.Name); err != nil {
		return nil, ErrInvalidf("%v", err)
	}
	if m.Home.Dir(s.Name).Exists() {
		return nil, exists(s.Name)
	}
	if err := s.Validate(HostLimits()); err != nil {
		return nil, errdefs.As(ErrInvalid, err)
	}
	b, err := m.Backend(s.Backend)
	if err != nil {
		return nil, err
	}
	opt := images.Options{Progress: o.Progress, Roles: ImageRoles(s, b)}
	chk, _ := b.(vmm.ImageChecker)
	inst, err := images.Install(ctx, o.Image, m.Home.CacheDir(), opt)
	if err != nil {
		return nil, err
	}
	if chk != nil {
		if err := chk.CheckImageDir(inst.Dir); err != nil {
			return nil, err
		}
	}
	if role := EngineLayerRole(s, b); role != "" && inst.Manifest.EngineLayers() && !slices.ContainsFunc(inst.Manifest.Files, func(f images.File) bool { return f.Role == role }) {
		return nil, ErrInvalidf("--engine %s: the image %s has no layer for it (%s)", s.Engine, inst.Manifest.Version, role)
	}
	if s.Kubernetes && !slices.ContainsFunc(inst.Manifest.Files, func(f images.File) bool { return f.Role == images.RoleKube }) {
		return nil, ErrInvalidf("--kubernetes: the image %s has no Kubernetes layer (build one with make image-kube)", inst.Manifest.Version)
	}
	s.Image = ImageRef{Digest: inst.Digest, Version: inst.Manifest.Version, Dir: inst.Dir, Source: o.Image, Arch: inst.Manifest.Arch}
	return inst, m.Home.withGroupLease(s, func() error { return m.Home.Create(s) })
}

// ImageRoles are the optional files of the image a machine of s needs on backend b: what
// the backend boots from (vmm.ImageChecker), its engine's layer (EngineLayerRole), and
// the Kubernetes layer when s runs Kubernetes (only those machines download it).
func ImageRoles(s *Spec, b vmm.Backend) []string {
	var roles []string
	if chk, ok := b.(vmm.ImageChecker); ok {
		roles = chk.ImageRoles()
	}
	if role := EngineLayerRole(s, b); role != "" {
		roles = append(slices.Clip(roles), role)
	}
	if s.Kubernetes {
		roles = append(slices.Clip(roles), images.RoleKube)
	}
	return roles
}

// EngineLayerRole is the image role of the engine layer a machine of s attaches on
// backend b, or "" where it attaches none: WSL boots its own root filesystem tarball,
// which carries every engine (it cannot attach a disk). An image from before the engine
// layers has no such file, and its root carries every engine.
func EngineLayerRole(s *Spec, b vmm.Backend) string {
	if chk, ok := b.(vmm.ImageChecker); ok && slices.Contains(chk.ImageRoles(), images.RoleWSLRootfs) {
		return ""
	}
	return images.EngineRole(string(s.Engine))
}

// Phase is a step of a start as the caller sees it.
type Phase struct {
	// Phase is the agent's phase; empty while the agent is not up yet.
	Phase agentapi.Phase
	// Message is a note on the way ("had crashed; recovering").
	Message string
}

// StartOptions say who hears a start's progress.
type StartOptions struct {
	// Progress hears each phase the agent reports; nil ignores them.
	Progress func(Phase)
	// SwitchContext makes the machine's docker context the current one even when the
	// user chose another (--switch-context); the machine's own setting does the same.
	SwitchContext bool
}

// StartResult says how a start went.
type StartResult struct {
	// AlreadyRunning: nothing was done.
	AlreadyRunning bool
	// Took is how long the machine took to answer.
	Took time.Duration
	// State is the agent's state when the engine answered (its Boot says warm or why cold).
	State *agentapi.State
	// Engine is the engine's endpoint and Context the docker context made for it.
	Engine, Context string
	// ContextErr is why a client connection (docker context, podman connection) could not
	// be written; the machine runs anyway.
	ContextErr error
	// Switch says whether the machine's docker context became the current one, or why not.
	Switch hostenv.SwitchResult
}

// StartError is a start that failed: the agent exited before the engine answered. It
// carries the ends of the agent's log and of the guest's console, which say why.
type StartError struct {
	Name    string
	Err     error
	Reason  string // the agent's last word, from its event stream
	Log     string // the host agent log's end
	Console string // the serial console's end
	Dir     Dir
}

func (e *StartError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "machine %q failed to start (%v)", e.Name, e.Err)
	if e.Reason != "" {
		fmt.Fprintf(&b, ": %s", e.Reason)
	}
	fmt.Fprintf(&b, "\n--- host agent log (%s) ---\n%s\n", e.Dir.File(FileAgentLog), e.Log)
	fmt.Fprintf(&b, "--- serial console (%s) ---\n%s", e.Dir.File(FileSerialLog), e.Console)
	return b.String()
}

func (e *StartError) Unwrap() error { return e.Err }

// Start starts a machine: it spawns the machine's host agent, detached, and follows the
// agent's event stream until the engine answers or the agent exits. Starting a running
// machine succeeds, so that login autostart and scripts can start unconditionally.
func (m *Manager) Start(ctx context.Context, name string, o StartOptions) (*StartResult, error) {
	d, _, err := m.Machine(name)
	if err != nil {
		return nil, err
	}
	progress := func(p Phase) {
		if o.Progress != nil {
			o.Progress(p)
		}
	}
	lock, err := TryLock(d.File(FileStartLock))
	if errors.Is(err, ErrLocked) {
		return nil, &Error{Name: name, Class: ErrBusy, Detail: "is being started by another skiff command"}
	}
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	switch st := d.Status(ctx); st.State {
	case StateRunning:
		res := &StartResult{AlreadyRunning: true, Engine: d.EngineEndpoint(), State: st.Agent, Context: hostenv.ContextName(name)}
		if o.SwitchContext {
			// Asked for by name: the switch is the whole point of this call.
			m.connect(ctx, d, res, o)
		}
		return res, nil
	case StateStarting, StateStopping:
		return nil, wrongState(name, st.State, "wait for it to finish")
	case StateCrashed:
		progress(Phase{Message: "had crashed; recovering"})
		os.Remove(d.File(FileAgentPID))
	}
	if len(m.Agent) == 0 {
		return nil, errors.New("no host agent command configured")
	}
	logf, err := os.OpenFile(d.File(FileAgentLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	agent := exec.Command(m.Agent[0], append(m.Agent[1:], name)...)
	agent.Stdout, agent.Stderr = logf, logf
	agent.Dir = d.Path
	// The agent finds the machine in this home, whatever the caller's environment says.
	agent.Env = append(os.Environ(), "SKIFF_HOME="+m.Home.Root)
	detach(agent)
	began := time.Now()
	err = agent.Start()
	logf.Close()
	if err != nil {
		return nil, fmt.Errorf("start the host agent: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- agent.Wait() }()

	st, reason, err := followStart(ctx, agentapi.NewClient(d.Sock(SockControl)), exited, progress)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &StartError{Name: name, Err: err, Reason: reason, Dir: d,
			Log: tail(d.File(FileAgentLog), 15), Console: tail(d.File(FileSerialLog), 25)}
	}
	res := &StartResult{Took: time.Since(began), State: st, Engine: d.EngineEndpoint(), Context: hostenv.ContextName(name)}
	m.connect(ctx, d, res, o)
	return res, nil
}

// connect writes the machine's connection in every engine client on the host and makes
// its docker context the current one where nothing would be lost (hostenv.SwitchContext).
func (m *Manager) connect(ctx context.Context, d Dir, res *StartResult, o StartOptions) {
	tg := hostenv.Target{Machine: d.Name, Endpoint: res.Engine}
	asked := o.SwitchContext
	if s, err := d.Spec(); err == nil {
		tg.Engine = string(s.Engine)
		asked = asked || s.SwitchContext
	}
	res.ContextErr = hostenv.AddAll(ctx, hostenv.Clients(), tg)
	if res.ContextErr != nil {
		return
	}
	sw, err := hostenv.SwitchContext(ctx, hostenv.SwitchOptions{Machine: d.Name, Asked: asked, Record: m.contextRecord()})
	if err != nil {
		res.ContextErr = fmt.Errorf("docker's current context: %w", err)
	}
	res.Switch = sw
}

// contextRecord is where the home keeps which docker context Skiff replaced as current.
func (m *Manager) contextRecord() string { return filepath.Join(m.Home.Root, "docker-context.json") }

// restoreContext puts back the docker context that was current before the machine's,
// if Skiff switched it; it says which, or "" when it left things alone.
func (m *Manager) restoreContext(name string) (string, error) {
	prev, err := hostenv.RestoreContext(name, m.contextRecord())
	if err != nil {
		return "", fmt.Errorf("put back docker's current context: %w", err)
	}
	return prev, nil
}

// followStart follows a starting agent's events until its phase is running, and returns
// its state then. It fails when the agent process exits first, with the agent's last
// word if it said one.
func followStart(ctx context.Context, cl *agentapi.Client, exited <-chan error, progress func(Phase)) (*agentapi.State, string, error) {
	var reason string
	running := errors.New("running")
	for {
		// The agent makes its control socket within milliseconds; until then the dial
		// fails at once and is retried, and the event stream drives the rest.
		err := cl.Events(ctx, func(e agentapi.Event) error {
			if e.Type == agentapi.EventError {
				reason = e.Message
			}
			if e.Phase != "" && e.Type == agentapi.EventPhase {
				progress(Phase{Phase: e.Phase})
			}
			if e.Phase == agentapi.PhaseRunning {
				return running
			}
			return nil
		})
		if errors.Is(err, running) {
			st, err := cl.State(ctx)
			return st, "", err
		}
		select {
		case err := <-exited:
			if err == nil {
				err = errors.New("the host agent exited")
			}
			return nil, reason, err
		case <-ctx.Done():
			return nil, "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// StopResult says how a stop went.
type StopResult struct {
	// AlreadyStopped: the machine was not running (and its saved state, if any, is kept
	// unless the stop was cold).
	AlreadyStopped bool
	// Discarded: a cold stop of a suspended machine dropped its saved state.
	Discarded bool
	// Recovered: the machine had crashed and is now marked stopped.
	Recovered bool
	// Saved is the saved state of a machine that suspended.
	Saved *SavedStateInfo
	// NotSuspended says why a stop that could have suspended shut down cold instead.
	NotSuspended string
	// RestoredContext is the docker context made current again, Skiff having switched
	// away from it on start; ContextErr says why that failed.
	RestoredContext string
	ContextErr      error
}

// Stop stops a machine as req asks: suspended for a warm start by default, shut down
// with Cold, powered off with Force.
func (m *Manager) Stop(ctx context.Context, name string, req agentapi.StopRequest) (*StopResult, error) {
	d, _, err := m.Machine(name)
	if err != nil {
		return nil, err
	}
	res, err := stop(ctx, d, req)
	if err != nil {
		return nil, err
	}
	res.RestoredContext, res.ContextErr = m.restoreContext(name)
	return res, nil
}

func stop(ctx context.Context, d Dir, req agentapi.StopRequest) (*StopResult, error) {
	switch d.Status(ctx).State {
	case StateStopped:
		if req.Cold && d.SavedStateInfo() != nil {
			if err := d.DiscardSavedState(); err != nil {
				return nil, fmt.Errorf("discard the saved state of %s: %w", d.Name, err)
			}
			return &StopResult{Discarded: true}, nil
		}
		return &StopResult{AlreadyStopped: true}, nil
	case StateCrashed:
		os.Remove(d.File(FileAgentPID))
		return &StopResult{Recovered: true}, nil
	}
	res := &StopResult{}
	ar, err := agentapi.NewClient(d.Sock(SockControl)).Stop(ctx, req)
	if err != nil {
		// An agent that exited as it answered has done the job; one still running has not.
		time.Sleep(500 * time.Millisecond)
		if Held(d.File(FileAgentLock)) || d.Status(ctx).State == StateCrashed {
			return nil, fmt.Errorf("stop %s: %w", d.Name, err)
		}
	}
	// The agent answers once the VM is down; it releases its lock as it exits.
	for i := 0; i < 100 && Held(d.File(FileAgentLock)); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if ar != nil {
		res.NotSuspended = ar.NotSuspended
	}
	res.Saved = d.SavedStateInfo()
	return res, nil
}

// RmOptions say how far rm may go.
type RmOptions struct {
	// Force stops a running machine first.
	Force bool
	// Warn hears what was left in place on purpose (something the backend did not make).
	Warn func(string)
	// Note hears what else changed on the host (docker's current context put back).
	Note func(string)
}

// Remove deletes a machine and everything made for it: what its backend made outside
// its directory (vmm.Remover), its directories and its docker context.
func (m *Manager) Remove(ctx context.Context, name string, o RmOptions) error {
	if err := ValidateName(name); err != nil {
		return ErrInvalidf("%v", err)
	}
	d := m.Home.Dir(name)
	if !d.Exists() {
		if _, err := os.Stat(d.Path); err != nil {
			return NotFound(name)
		}
	}
	if st := d.Status(ctx); st.State != StateStopped && st.State != StateCrashed {
		if !o.Force {
			return wrongState(name, st.State, "stop it first or use rm -f")
		}
		if _, err := stop(ctx, d, agentapi.StopRequest{Force: true, Cold: true}); err != nil {
			return err
		}
	}
	kubeName, kubeconfig, err := d.RemoveKube()
	if err != nil && o.Warn != nil {
		o.Warn(fmt.Sprintf("the machine's kubeconfig entries: %v", err))
	}
	var b vmm.Backend
	if s, err := d.Spec(); err == nil {
		// A machine without a readable config (its init stopped halfway) never started,
		// so no backend made anything for it.
		if b, err = m.Backend(s.Backend); err != nil {
			return err
		}
	}
	if err := m.Home.Remove(ctx, name, RemoveOptions{Backend: b, Warn: o.Warn}); err != nil {
		return err
	}
	prev, err := m.restoreContext(name)
	switch {
	case err != nil && o.Warn != nil:
		o.Warn(err.Error())
	case prev != "" && o.Note != nil:
		o.Note(fmt.Sprintf("docker's current context is %q again", prev))
	}
	hostenv.RemoveAll(ctx, hostenv.Clients(), name)
	if kubeName != "" && o.Note != nil {
		o.Note(fmt.Sprintf("kubectl's context %q is removed from %s", kubeName, kubeconfig))
	}
	return nil
}

// Changes are what Set changes; nil fields stay as they are.
type Changes struct {
	CPUs      *int
	MemoryMiB *int64
	DiskGiB   *int64
	Autostart *bool
	// HostLoopback: whether containers reach the host's loopback services (from the
	// next start).
	HostLoopback *bool
	// SwitchContext: whether every start makes the machine's docker context current.
	SwitchContext *bool
	// MemoryReclaim: how unused guest memory goes back to the host (Spec.MemoryReclaim).
	MemoryReclaim *string
	// FileEvents: whether host file changes reach watchers in the guest (from the next
	// start).
	FileEvents *bool
	// NetworkGroup: the network group the machine joins ("" leaves its group), with a
	// new lease there (from the next start).
	NetworkGroup *string
	// Kubernetes: whether the machine runs Kubernetes (from the next start); turning it
	// off removes its entries from the user's kubeconfig at once.
	Kubernetes *bool
}

// SetResult says what Set did.
type SetResult struct {
	Spec *Spec
	// Discarded: the machine was suspended with other hardware; its next start boots.
	Discarded bool
}

// Set changes a stopped machine's hardware, or any machine's autostart.
func (m *Manager) Set(ctx context.Context, name string, c Changes) (*SetResult, error) {
	d, spec, err := m.Machine(name)
	if err != nil {
		return nil, err
	}
	hardware := c.CPUs != nil || c.MemoryMiB != nil || c.DiskGiB != nil || c.HostLoopback != nil || c.MemoryReclaim != nil ||
		(c.NetworkGroup != nil && *c.NetworkGroup != spec.NetworkGroup) ||
		(c.Kubernetes != nil && *c.Kubernetes != spec.Kubernetes)
	if st := d.Status(ctx); hardware && st.State != StateStopped && st.State != StateCrashed {
		return nil, wrongState(name, st.State, "stop it before changing it")
	}
	next := *spec
	if c.CPUs != nil {
		next.CPUs = *c.CPUs
	}
	if c.MemoryMiB != nil {
		next.MemoryMiB = *c.MemoryMiB
	}
	if c.Autostart != nil {
		next.Autostart = *c.Autostart
	}
	if c.HostLoopback != nil {
		next.NoHostLoopback = !*c.HostLoopback
	}
	if c.SwitchContext != nil {
		next.SwitchContext = *c.SwitchContext
	}
	if c.MemoryReclaim != nil {
		next.MemoryReclaim = *c.MemoryReclaim
	}
	if c.FileEvents != nil {
		next.NoFileEvents = !*c.FileEvents
	}
	if c.NetworkGroup != nil {
		next.NetworkGroup = *c.NetworkGroup
	}
	if c.Kubernetes != nil {
		next.Kubernetes = *c.Kubernetes
	}
	if c.DiskGiB != nil {
		if *c.DiskGiB < spec.DiskGiB {
			return nil, ErrInvalidf("--disk-size %dGiB: the data disk is %dGiB and cannot shrink", *c.DiskGiB, spec.DiskGiB)
		}
		next.DiskGiB = *c.DiskGiB
	}
	if err := next.Validate(HostLimits()); err != nil {
		return nil, errdefs.As(ErrInvalid, err)
	}
	if next.DiskGiB != spec.DiskGiB {
		if err := ResizeDataDisk(d, next.DiskGiB); err != nil {
			return nil, err
		}
	}
	if next.Autostart != spec.Autostart {
		if m.Autostart == nil {
			return nil, errors.New("autostart cannot be changed from here")
		}
		if err := m.Autostart(ctx, name, next.Autostart); err != nil {
			return nil, err
		}
	}
	save := func() error { return next.Save(d.File(FileConfig)) }
	if next.NetworkGroup != spec.NetworkGroup || (next.NetworkGroup != "" && next.GroupLease == nil) {
		err = m.Home.withGroupLease(&next, save)
	} else {
		err = save()
	}
	if err != nil {
		return nil, err
	}
	res := &SetResult{Spec: &next}
	if spec.Kubernetes && !next.Kubernetes {
		if _, _, err := d.RemoveKube(); err != nil {
			return nil, fmt.Errorf("remove the machine's kubeconfig entries: %w", err)
		}
	}
	// A suspended VM cannot resume with other hardware; say so now, not at start.
	if hardware && d.SavedStateInfo() != nil {
		if err := d.DiscardSavedState(); err != nil {
			return nil, err
		}
		res.Discarded = true
	}
	return res, nil
}

// View is what list and inspect show of a machine: the spec plus the status computed now.
type View struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Spec   *Spec  `json:"spec"`
	Dir    string `json:"dir"`
	Engine string `json:"engineSocket"`
	Disk   struct {
		Path           string `json:"path"`
		SizeBytes      int64  `json:"sizeBytes"`
		AllocatedBytes int64  `json:"allocatedBytes"`
	} `json:"dataDisk"`
	// SavedState is the suspended VM's state, when there is one.
	SavedState *SavedStateInfo `json:"savedState,omitempty"`
	// Kubernetes is where the machine's Kubernetes is reached from the host, when it
	// runs one (the API port once a start chose it, the kubeconfig entries once written).
	Kubernetes *KubeState `json:"kubernetes,omitempty"`
}

// Inspect computes one machine's view now.
func (m *Manager) Inspect(ctx context.Context, name string) (*View, error) {
	d, s, err := m.Machine(name)
	if err != nil {
		return nil, err
	}
	v := &View{Name: name, Status: d.Status(ctx), Spec: s, Dir: d.Path, Engine: d.EngineEndpoint()}
	v.Disk.Path = d.File(FileDataDisk)
	v.Disk.SizeBytes, v.Disk.AllocatedBytes = fileSizes(v.Disk.Path)
	v.SavedState = d.SavedStateInfo()
	if s.Kubernetes {
		if v.Kubernetes, err = d.KubeState(); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// List computes the view of every machine, in name order.
func (m *Manager) List(ctx context.Context) ([]*View, error) {
	names, err := m.Home.List()
	if err != nil {
		return nil, err
	}
	views := []*View{}
	for _, n := range names {
		v, err := m.Inspect(ctx, n)
		if err != nil {
			return nil, err
		}
		views = append(views, v)
	}
	return views, nil
}
