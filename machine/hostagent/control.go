package hostagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/skiff-dev/skiff/forward"
	"github.com/skiff-dev/skiff/forward/transport"
	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/machine/agentapi"
	"github.com/skiff-dev/skiff/machine/errdefs"
	"github.com/skiff-dev/skiff/vmm"
)

// listenUnix listens on a socket only its owner can use. The run directory is already
// 0700, so there is no window in which another user could connect.
func listenUnix(path string) (net.Listener, error) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

func (a *Agent) serveControl(ctx context.Context) (*http.Server, error) {
	ln, err := listenUnix(a.Dir.Sock(machine.SockControl))
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+agentapi.PathState, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, a.State())
	})
	mux.HandleFunc("POST "+agentapi.PathStop, a.handleStop)
	mux.HandleFunc("GET "+agentapi.PathEvents, a.handleEvents)
	mux.HandleFunc("POST "+agentapi.PathConnect, a.handleConnect)
	mux.HandleFunc("POST "+agentapi.PathControl, func(w http.ResponseWriter, r *http.Request) {
		var req forward.ControlRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			httpError(w, errdefs.As(errdefs.ErrInvalid, err))
			return
		}
		resp, err := a.control(r.Context(), req)
		if err != nil {
			httpError(w, err)
			return
		}
		writeJSON(w, resp)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	a.goAgent(ctx, "control API", func(context.Context) error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	return srv, nil
}

// httpError answers with err's class as the status (errdefs), which the client turns
// back into the same class.
func httpError(w http.ResponseWriter, err error) {
	http.Error(w, err.Error(), errdefs.ToHTTP(err))
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// State computes the agent's view now; nothing here is cached.
func (a *Agent) State() agentapi.State {
	a.mu.Lock()
	s := agentapi.State{
		Name: a.Spec.Name, Phase: a.phase, AgentPID: os.Getpid(), Backend: a.Backend.Name(),
		StartedAt: a.startedAt, VMStartedAt: a.vmStartedAt, ReadyAt: a.readyAt, Engine: string(a.Spec.Engine),
		EngineSock: a.Dir.EngineEndpoint(), Warnings: append([]string(nil), a.warnings...), Boot: a.boot,
	}
	if a.ready != nil {
		s.EngineAPI, s.GuestBootMS = a.ready.EngineAPI, a.ready.BootMillis
	}
	vm := a.vm
	a.mu.Unlock()
	if p, ok := vm.(vmm.ProcessVM); ok {
		s.VMPID = p.PID()
	}
	if d, ok := vm.(vmm.Describer); ok {
		s.VM = d.Describe()
	}
	if vm != nil {
		s.Transport = medium(vm)
	}
	s.Features = vmm.Features(a.Backend, vm)
	if p := a.portManager(); p != nil {
		s.Forwards = p.Status()
	} else {
		s.Forwards = []agentapi.Forward{}
	}
	if a.net != nil {
		s.NetRxBytes, s.NetTxBytes = a.net.BytesReceived(), a.net.BytesSent()
	}
	s.Memory = a.memoryState(vm)
	s.FileEvents = a.fileEventsState()
	return s
}

func (a *Agent) handleStop(w http.ResponseWriter, r *http.Request) {
	var req agentapi.StopRequest
	json.NewDecoder(r.Body).Decode(&req)
	select {
	case a.stopReq <- req:
	default: // a stop is already under way; wait for it like the first caller
	}
	select {
	case <-a.stopped:
		a.mu.Lock()
		res := a.stopResult
		a.mu.Unlock()
		writeJSON(w, res)
	case <-r.Context().Done():
	}
}

func (a *Agent) handleEvents(w http.ResponseWriter, r *http.Request) {
	ch := make(chan agentapi.Event, 64)
	a.mu.Lock()
	a.subs[ch] = true
	phase := a.phase
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.subs, ch)
		a.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	fl, _ := w.(http.Flusher)
	send := func(e agentapi.Event) bool {
		if err := enc.Encode(e); err != nil {
			return false
		}
		if fl != nil {
			fl.Flush()
		}
		return true
	}
	first := agentapi.Event{Time: time.Now(), Type: agentapi.EventPhase, Phase: phase}
	if !send(first) {
		return
	}
	if p := a.portManager(); p != nil {
		send(agentapi.Event{Time: time.Now(), Type: agentapi.EventForwards, Phase: phase, Forwards: p.Status()})
	}
	for {
		select {
		case e := <-ch:
			if !send(e) {
				return
			}
		case <-r.Context().Done():
			return
		case <-a.stopped:
			return
		}
	}
}

// handleConnect upgrades the request to a raw stream to a guest service, so that the CLI
// can reach sshd without any host port.
func (a *Agent) handleConnect(w http.ResponseWriter, r *http.Request) {
	service := r.URL.Query().Get("service")
	if service != forward.ServiceSSH && service != forward.ServiceEngine && !strings.HasPrefix(service, forward.PrefixTCP) {
		httpError(w, errdefs.Errorf(errdefs.ErrInvalid, "service %q cannot be connected", service))
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), agentapi.UpgradeProto) {
		http.Error(w, "upgrade required", http.StatusUpgradeRequired)
		return
	}
	_, guest := a.current()
	if guest == nil {
		httpError(w, errdefs.Errorf(errdefs.ErrState, "the machine is not running"))
		return
	}
	g, err := guest.Dial(r.Context(), service)
	if err != nil {
		httpError(w, fmt.Errorf("%w: %w", errdefs.ErrUnavailable, err))
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		g.Close()
		http.Error(w, "cannot hijack", http.StatusInternalServerError)
		return
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		g.Close()
		return
	}
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", agentapi.UpgradeProto)
	brw.Flush()
	if n := brw.Reader.Buffered(); n > 0 {
		buf := make([]byte, n)
		brw.Read(buf)
		g.Write(buf)
	}
	transport.Splice(c, g)
}
