package fake

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/skiff-dev/skiff/gui/engine"
	"github.com/skiff-dev/skiff/gui/model"
	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/machine/agentapi"
)

// Machine is one fake machine: its spec, agent and engine.
type Machine struct {
	Spec    machine.Spec
	Agent   *Agent
	Engine  *Engine
	LogPath string
	crashed bool
}

// Source is a model.Source over fake machines. Status goes through the fake control
// API like the real one does, so tests exercise the HTTP client too.
type Source struct {
	Dir      string
	mu       sync.Mutex
	machines map[string]*Machine
}

var _ model.Source = (*Source)(nil)

// NewSource makes an empty source whose sockets live in dir.
func NewSource(dir string) *Source { return &Source{Dir: dir, machines: map[string]*Machine{}} }

// Add creates a machine with a fake agent in phase (""=stopped) and a fake engine.
func (s *Source) Add(spec machine.Spec, phase agentapi.Phase) (*Machine, error) {
	n := spec.Name
	a, err := NewAgent(s.Dir, "a-"+n+".sock", agentapi.State{Name: n, Phase: phase, Backend: "fake", Engine: "docker",
		StartedAt: time.Now(), Memory: &agentapi.Memory{Reclaim: "free-page-reporting", MachineBytes: uint64(spec.MemoryMiB) << 20, HostBytes: 740 << 20}})
	if err != nil {
		return nil, fmt.Errorf("fake agent: %w", err)
	}
	e, err := NewEngine(s.Dir, "e-"+n+".sock")
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("fake engine: %w", err)
	}
	logp := filepath.Join(s.Dir, n+"-agent.log")
	os.WriteFile(logp, []byte("fake agent log of "+n+"\n"), 0o600)
	m := &Machine{Spec: spec, Agent: a, Engine: e, LogPath: logp}
	s.mu.Lock()
	s.machines[n] = m
	s.mu.Unlock()
	return m, nil
}

// Remove forgets a machine (as `skiff machine rm` would).
func (s *Source) Remove(name string) {
	s.mu.Lock()
	m := s.machines[name]
	delete(s.machines, name)
	s.mu.Unlock()
	if m != nil {
		m.Agent.Close()
		m.Engine.Close()
	}
}

// SetCrashed marks a machine as crashed: its agent is gone without a clean stop.
func (s *Source) SetCrashed(name string, crashed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.machines[name]; m != nil {
		m.crashed = crashed
	}
}

// Close stops all fake servers.
func (s *Source) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.machines {
		m.Agent.Close()
		m.Engine.Close()
	}
}

func (s *Source) get(name string) *Machine {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.machines[name]
}

// Machine returns a fake machine by name.
func (s *Source) Machine(name string) *Machine { return s.get(name) }

func (s *Source) List(ctx context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for n := range s.machines {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

func (s *Source) Spec(name string) (*machine.Spec, error) {
	m := s.get(name)
	if m == nil {
		return nil, machine.NotFound(name)
	}
	sp := m.Spec
	return &sp, nil
}

func (s *Source) Status(ctx context.Context, name string) machine.Status {
	m := s.get(name)
	if m == nil {
		return machine.Status{State: machine.StateStopped}
	}
	s.mu.Lock()
	crashed := m.crashed
	s.mu.Unlock()
	if crashed {
		return machine.Status{State: machine.StateCrashed, Reason: "the host agent exited without a clean stop"}
	}
	if m.Agent.Phase() == "" {
		return machine.Status{State: machine.StateStopped}
	}
	st, err := agentapi.NewClient(m.Agent.Socket).State(ctx)
	if err != nil {
		return machine.Status{State: machine.StateStarting, Reason: err.Error()}
	}
	return machine.Status{State: machine.State(st.Phase), Agent: st}
}

func (s *Source) Agent(name string) model.Agent {
	m := s.get(name)
	if m == nil {
		return agentapi.NewClient(filepath.Join(s.Dir, "missing.sock"))
	}
	return agentapi.NewClient(m.Agent.Socket)
}

func (s *Source) Engine(name string) model.Engine { return engine.New(s.EngineSocket(name)) }

func (s *Source) EngineSocket(name string) string {
	if m := s.get(name); m != nil {
		return m.Engine.Socket
	}
	return filepath.Join(s.Dir, "missing.sock")
}

func (s *Source) LogPath(name string) string {
	if m := s.get(name); m != nil {
		return m.LogPath
	}
	return ""
}

// Starter "starts" fake machines by putting their agent in the running phase.
type Starter struct {
	Src   *Source
	Err   error
	mu    sync.Mutex
	calls []string
}

// Start records the call and brings the fake agent up.
func (f *Starter) Start(ctx context.Context, name string) error {
	f.mu.Lock()
	f.calls = append(f.calls, name)
	f.mu.Unlock()
	if f.Err != nil {
		return f.Err
	}
	m := f.Src.get(name)
	if m == nil {
		return machine.NotFound(name)
	}
	f.Src.SetCrashed(name, false)
	m.Agent.SetPhase(agentapi.PhaseRunning)
	return nil
}

// Calls returns the names Start was called with.
func (f *Starter) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}
