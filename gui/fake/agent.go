package fake

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/skiff-dev/skiff/forward"
	"github.com/skiff-dev/skiff/machine/agentapi"
)

// Agent is a fake host agent's control API.
type Agent struct {
	Recorder
	Socket string
	srv    *httptest.Server

	mu       sync.Mutex
	state    agentapi.State
	subs     map[chan agentapi.Event]bool
	diskUsed uint64
	diskSize uint64
	stopped  chan struct{} // closed by a stop; streams end with it
}

// NewAgent serves a fake agent on dir/name in the given phase.
func NewAgent(dir, name string, st agentapi.State) (*Agent, error) {
	a := &Agent{state: st, subs: map[chan agentapi.Event]bool{}, stopped: make(chan struct{}),
		diskUsed: 1536 << 20, diskSize: 20 << 30}
	if a.state.Forwards == nil {
		a.state.Forwards = []agentapi.Forward{}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+agentapi.PathState, a.handleState)
	mux.HandleFunc("POST "+agentapi.PathStop, a.handleStop)
	mux.HandleFunc("GET "+agentapi.PathEvents, a.handleEvents)
	mux.HandleFunc("POST "+agentapi.PathControl, a.handleControl)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.record(r)
		mux.ServeHTTP(w, r)
	})
	srv, p, err := serveUnix(dir, name, h)
	if err != nil {
		return nil, err
	}
	a.srv, a.Socket = srv, p
	return a, nil
}

// Close stops serving.
func (a *Agent) Close() {
	a.srv.CloseClientConnections()
	a.srv.Close()
}

// Phase is the agent's current phase; "" once it was stopped.
func (a *Agent) Phase() agentapi.Phase {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.state.Phase
}

// SetPhase changes the phase and tells the event subscribers.
func (a *Agent) SetPhase(p agentapi.Phase) {
	a.mu.Lock()
	a.state.Phase = p
	if p != "" {
		select {
		case <-a.stopped:
			a.stopped = make(chan struct{})
		default:
		}
	}
	a.mu.Unlock()
	a.Emit(agentapi.Event{Time: time.Now(), Type: "phase", Phase: p})
}

// SetForwards changes the forwarded ports and tells the event subscribers.
func (a *Agent) SetForwards(f []agentapi.Forward) {
	a.mu.Lock()
	a.state.Forwards = f
	a.mu.Unlock()
	a.Emit(agentapi.Event{Time: time.Now(), Type: "forwards", Forwards: f})
}

// Emit sends an event to every subscriber.
func (a *Agent) Emit(e agentapi.Event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for ch := range a.subs {
		select {
		case ch <- e:
		default:
		}
	}
}

func (a *Agent) handleState(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	st := a.state
	a.mu.Unlock()
	if st.Phase == "" {
		http.Error(w, "not running", http.StatusServiceUnavailable)
		return
	}
	writeJSON(w, st)
}

func (a *Agent) handleStop(w http.ResponseWriter, r *http.Request) {
	var req agentapi.StopRequest
	json.NewDecoder(r.Body).Decode(&req)
	a.SetPhase(agentapi.PhaseStopping)
	a.mu.Lock()
	a.state.Phase = ""
	close(a.stopped)
	a.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (a *Agent) handleEvents(w http.ResponseWriter, r *http.Request) {
	ch := make(chan agentapi.Event, 64)
	a.mu.Lock()
	a.subs[ch] = true
	phase, fw, stopped := a.state.Phase, a.state.Forwards, a.stopped
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.subs, ch)
		a.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	fl := w.(http.Flusher)
	enc.Encode(agentapi.Event{Time: time.Now(), Type: "phase", Phase: phase})
	enc.Encode(agentapi.Event{Time: time.Now(), Type: "forwards", Forwards: fw})
	fl.Flush()
	for {
		select {
		case e := <-ch:
			if enc.Encode(e) != nil {
				return
			}
			fl.Flush()
		case <-stopped:
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (a *Agent) handleControl(w http.ResponseWriter, r *http.Request) {
	var req forward.ControlRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	info := &forward.GuestInfo{Kernel: "6.1.0-fake", DataDiskUsed: a.diskUsed, DataDiskBytes: a.diskSize}
	a.mu.Unlock()
	switch req.Op {
	case forward.OpInfo:
		writeJSON(w, forward.ControlResponse{Info: info})
	default:
		writeJSON(w, forward.ControlResponse{Error: "fake agent: op " + req.Op + " not faked"})
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
