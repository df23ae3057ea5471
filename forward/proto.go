package forward

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"time"
)

// Service names on the guest agent's transport port.
const (
	ServiceEngine  = "engine"  // the engine API socket
	ServicePorts   = "ports"   // a stream of listener snapshots, one JSON line per change
	ServiceControl = "control" // one ControlRequest, one ControlResponse
	ServiceSSH     = "ssh"     // the guest's sshd
	PrefixTCP      = "tcp/"    // tcp/ADDR:PORT in the guest
	PrefixUDP      = "udp/"    // udp/ADDR:PORT in the guest, datagrams framed on the stream
)

// ServiceFileEvents carries host file changes to the guest and the folders the guest's
// processes watch back (forward/fsevents).
const ServiceFileEvents = "fsevents"

// Service names on the host agent's transport port (the guest dials these).
const (
	HostServiceReady = "ready" // the guest announces that the engine answers
	// HostServiceNetwork carries the guest's Ethernet frames (4-byte big-endian length,
	// then the frame) to the user-mode network, for VMs without a NIC (Hyper-V, WSL2).
	HostServiceNetwork = "network"
	HostPrefix9P       = "9p/" // 9p/TAG: the host's 9p server for one share
)

// Control operations.
const (
	OpTime     = "time"     // step the guest clock to TimeNano
	OpShutdown = "shutdown" // stop the engine, sync, power off
	OpTrim     = "trim"     // fstrim the data disk now
	OpInfo     = "info"     // report guest facts
	OpSuspend  = "suspend"  // quiesce for a VM suspend: flush, freeze the data disk, unmount shares
	OpResume   = "resume"   // after a restore (or a failed suspend): step the clock to TimeNano, thaw, remount
)

// ControlRequest is one call on the control service.
type ControlRequest struct {
	Op       string `json:"op"`
	TimeNano int64  `json:"timeNano,omitempty"`
}

// ControlResponse answers a ControlRequest.
type ControlResponse struct {
	Error  string `json:"error,omitempty"`
	Output string `json:"output,omitempty"`
	// DriftNano is how far the guest clock was off before a time call.
	DriftNano int64      `json:"driftNano,omitempty"`
	Info      *GuestInfo `json:"info,omitempty"`
	// Steps times the parts of an operation the host waits on (a resume's), for its log.
	// They run at the same time: each is timed from the operation's start.
	Steps []Step `json:"steps,omitempty"`
}

// Step is one timed part of a control operation.
type Step struct {
	Name   string `json:"name"`
	Micros int64  `json:"us"`
}

// Duration is how long the step took.
func (s Step) Duration() time.Duration { return time.Duration(s.Micros) * time.Microsecond }

// StepsText lays steps out for a log or a report: "restore 213.4ms, engine answer 285ms".
func StepsText(steps []Step) string {
	parts := make([]string, len(steps))
	for i, s := range steps {
		parts[i] = fmt.Sprintf("%s %s", s.Name, s.Duration().Round(100*time.Microsecond))
	}
	return strings.Join(parts, ", ")
}

// GuestInfo is what the guest reports about itself.
type GuestInfo struct {
	Kernel        string `json:"kernel"`
	EngineAPI     string `json:"engineAPI"`
	DataDiskBytes uint64 `json:"dataDiskBytes"`
	DataDiskUsed  uint64 `json:"dataDiskUsed"`
	UptimeSeconds int64  `json:"uptimeSeconds"`
}

// Ready is what the guest sends on the ready service.
type Ready struct {
	EngineAPI    string `json:"engineAPI"`
	BootMillis   int64  `json:"bootMillis"` // kernel uptime when the engine first answered
	AgentVersion string `json:"agentVersion"`
	// Warnings are what the guest found at boot that the user should hear.
	Warnings []string `json:"warnings,omitempty"`
}

// maxDatagram bounds a UDP payload carried over a stream.
const maxDatagram = 65535

// WriteDatagram frames one datagram on a stream.
func WriteDatagram(w io.Writer, p []byte) error {
	if len(p) > maxDatagram {
		return fmt.Errorf("datagram of %d bytes too large", len(p))
	}
	buf := make([]byte, 2+len(p))
	binary.BigEndian.PutUint16(buf, uint16(len(p)))
	copy(buf[2:], p)
	_, err := w.Write(buf)
	return err
}

// ReadDatagram reads one framed datagram into buf and returns its length.
func ReadDatagram(r io.Reader, buf []byte) (int, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, err
	}
	n := int(binary.BigEndian.Uint16(h[:]))
	if n > len(buf) {
		return 0, fmt.Errorf("datagram of %d bytes exceeds buffer", n)
	}
	_, err := io.ReadFull(r, buf[:n])
	return n, err
}
