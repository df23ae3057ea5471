// Package guest is the guest agent's end of every channel: it answers the host's streams
// (engine API, ports, control) and announces readiness.
package guest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"reflect"
	"strings"
	"sync/atomic"
	"time"

	"github.com/skiff-dev/skiff/forward"
	"github.com/skiff-dev/skiff/forward/transport"
)

// System is what the agent needs from the booted guest.
type System interface {
	SetClock(t time.Time) time.Duration
	Shutdown()
	Trim() (string, error)
	Info(ctx context.Context) forward.GuestInfo
}

// Suspender is implemented by guests that can be suspended with their VM.
type Suspender interface {
	Quiesce() error
	// Resume steps the clock to now and undoes Quiesce; it reports how far the clock was off.
	Resume(now time.Time) (time.Duration, error)
}

// Agent routes host streams to guest services.
type Agent struct {
	EngineSocket string
	// EngineHandoff is where the engine takes API streams handed over to it (package
	// handoff of images/engine): it then serves the host's stream itself, where a copy to
	// EngineSocket costs the guest more CPU per request than the engine's own work. Empty,
	// or no engine there, and streams are copied.
	EngineHandoff string
	GuestIP       string
	Exclude       map[int]bool // guest ports never mirrored (sshd, the agent itself)
	System        System
	Logf          func(string, ...any)
	// ScanEvery is how often socket tables are read where the kernel cannot tell of
	// listens (forward.ListenWatch); well under the 1 s forwarding goal.
	ScanEvery time.Duration
	// FileEvents serves forward.ServiceFileEvents (forward/fsevents); nil refuses it.
	FileEvents transport.Handler

	handoffLogged atomic.Bool
}

// Route implements transport.Router.
func (a *Agent) Route(service string) (transport.Handler, error) {
	switch {
	case service == forward.ServiceEngine:
		return a.engine, nil
	case service == forward.ServiceSSH:
		return a.dialing("tcp", "127.0.0.1:22"), nil
	case service == forward.ServicePorts:
		return a.ports, nil
	case service == forward.ServiceControl:
		return a.control, nil
	case service == forward.ServiceMemory:
		return a.memory, nil
	case service == forward.ServiceFileEvents && a.FileEvents != nil:
		return a.FileEvents, nil
	case strings.HasPrefix(service, forward.PrefixTCP):
		return a.dialing("tcp", strings.TrimPrefix(service, forward.PrefixTCP)), nil
	case strings.HasPrefix(service, forward.PrefixUDP):
		return a.udp(strings.TrimPrefix(service, forward.PrefixUDP)), nil
	}
	return nil, fmt.Errorf("unknown service %q", service)
}

// engine hands an API stream over to the engine, or copies it to the engine's socket
// where none takes it.
func (a *Agent) engine(ctx context.Context, service string, conn net.Conn) {
	if a.EngineHandoff != "" {
		err := handOver(a.EngineHandoff, conn)
		if err == nil {
			conn.Close()
			return
		}
		if !engineAbsent(err) && a.handoffLogged.CompareAndSwap(false, true) {
			a.Logf("engine streams: hand-over failed, copying instead (logged once): %v", err)
		}
	}
	a.dialing("unix", a.EngineSocket)(ctx, service, conn)
}

func (a *Agent) dialing(network, addr string) transport.Handler {
	return func(ctx context.Context, _ string, conn net.Conn) {
		var d net.Dialer
		up, err := d.DialContext(ctx, network, addr)
		if err != nil {
			a.Logf("dial %s %s: %v", network, addr, err)
			conn.Close()
			return
		}
		transport.Splice(conn, up)
	}
}

// udp relays framed datagrams between the stream and one connected UDP socket, so each
// host-side client gets its own source port in the guest, as with a direct connection.
func (a *Agent) udp(addr string) transport.Handler {
	return func(ctx context.Context, _ string, conn net.Conn) {
		defer conn.Close()
		up, err := net.Dial("udp", addr)
		if err != nil {
			a.Logf("dial udp %s: %v", addr, err)
			return
		}
		defer up.Close()
		go func() {
			buf := make([]byte, 65535)
			for {
				up.SetReadDeadline(time.Now().Add(2 * time.Minute))
				n, err := up.Read(buf)
				if err != nil {
					conn.Close()
					return
				}
				if forward.WriteDatagram(conn, buf[:n]) != nil {
					return
				}
			}
		}()
		buf := make([]byte, 65535)
		for {
			n, err := forward.ReadDatagram(conn, buf)
			if err != nil {
				return
			}
			up.Write(buf[:n])
		}
	}
}

// Where the kernel tells of listens, the socket tables are read newsGap after its news
// (a proxy binding v4 and v6 is one reading), at most every ScanEvery (a UDP socket per
// DNS lookup is news too), and every safetyEvery besides: waking an idle VM several
// times a second costs, under emulation most of all.
const (
	newsGap     = 20 * time.Millisecond
	safetyEvery = 30 * time.Second
)

// ports streams the forwardable listener set: once at once, then on every change.
func (a *Agent) ports(ctx context.Context, _ string, conn net.Conn) {
	defer conn.Close()
	every := a.ScanEvery
	if every == 0 {
		every = 200 * time.Millisecond
	}
	minGap := every
	var news <-chan struct{}
	if w, err := forward.NewListenWatch(); err != nil {
		if a.Logf != nil {
			a.Logf("ports: %v; the socket tables are read every %s", err, every)
		}
	} else {
		defer w.Close()
		news, every = w.C(), safetyEvery
	}
	// Notice the host going away even while nothing changes: the loop then ends too, and
	// with it the listen watch (a host agent that went with a suspend leaves its stream
	// to be reset after the restore).
	gone := make(chan struct{})
	go func() {
		buf := make([]byte, 1)
		conn.Read(buf)
		conn.Close()
		close(gone)
	}()
	enc := json.NewEncoder(conn)
	var last []forward.Listener
	first := true
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		read := time.Now()
		cur := forward.ScanListeners(a.GuestIP, a.Exclude)
		if first || !reflect.DeepEqual(cur, last) {
			if cur == nil {
				cur = []forward.Listener{}
			}
			if err := enc.Encode(cur); err != nil {
				return
			}
			last, first = cur, false
		}
		select {
		case <-ctx.Done():
			return
		case <-gone:
			return
		case <-t.C:
		case <-news:
			time.Sleep(max(newsGap, time.Until(read.Add(minGap))))
		}
	}
}

func (a *Agent) control(ctx context.Context, _ string, conn net.Conn) {
	defer conn.Close()
	var req forward.ControlRequest
	if err := json.NewDecoder(bufio.NewReader(conn)).Decode(&req); err != nil {
		return
	}
	var resp forward.ControlResponse
	switch req.Op {
	case forward.OpTime:
		resp.DriftNano = int64(a.System.SetClock(time.Unix(0, req.TimeNano)))
	case forward.OpTrim:
		out, err := a.System.Trim()
		resp.Output = out
		if err != nil {
			resp.Error = err.Error()
		}
	case forward.OpInfo:
		info := a.System.Info(ctx)
		resp.Info = &info
	case forward.OpSuspend, forward.OpResume:
		resp = a.suspendOp(ctx, req)
	case forward.OpShutdown:
		json.NewEncoder(conn).Encode(resp)
		conn.Close()
		a.System.Shutdown()
		return
	default:
		resp.Error = fmt.Sprintf("unknown op %q", req.Op)
	}
	json.NewEncoder(conn).Encode(resp)
}

func (a *Agent) suspendOp(ctx context.Context, req forward.ControlRequest) (resp forward.ControlResponse) {
	s, ok := a.System.(Suspender)
	if !ok {
		resp.Error = "this guest cannot be suspended"
		return resp
	}
	if req.Op == forward.OpSuspend {
		if err := s.Quiesce(); err != nil {
			resp.Error = err.Error()
		}
		return resp
	}
	// The engine check runs beside the resume: a ping does not need the clock, the disk or
	// the shares, and on an emulated CPU each of the two takes a good part of a warm start.
	began := time.Now()
	engine := make(chan forward.GuestInfo, 1)
	var pinged time.Duration
	go func() {
		info := a.System.Info(ctx)
		pinged = time.Since(began)
		engine <- info
	}()
	drift, err := s.Resume(time.Unix(0, req.TimeNano))
	resp.DriftNano = int64(drift)
	if err != nil {
		resp.Error = err.Error()
	}
	resumed := time.Since(began)
	// The host marks the machine running on this answer: say whether the engine answers.
	info := <-engine
	resp.Info = &info
	resp.Steps = []forward.Step{{Name: "clock, disk and shares", Micros: resumed.Microseconds()},
		{Name: "engine answer", Micros: pinged.Microseconds()}}
	return resp
}

// AnnounceReady tells the host the engine answers, retrying until the host takes it.
func AnnounceReady(ctx context.Context, host transport.Dialer, r forward.Ready, logf func(string, ...any)) error {
	for {
		conn, err := host.Dial(ctx, forward.HostServiceReady)
		if err == nil {
			err = json.NewEncoder(conn).Encode(r)
			if err == nil {
				// Wait for the host's close so the message is known to have landed.
				conn.Read(make([]byte, 1))
			}
			conn.Close()
			if err == nil {
				return nil
			}
		}
		logf("announce ready: %v", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
