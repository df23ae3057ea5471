package model

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/skiff-dev/skiff/forward"
	"github.com/skiff-dev/skiff/gui/engine"
	"github.com/skiff-dev/skiff/installer/hostenv"
	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/machine/agentapi"
)

// Machine is what the tray and dashboard show about one machine.
type Machine struct {
	Name      string
	State     machine.State
	Reason    string
	Busy      string // an action of ours under way, e.g. "starting"
	CPUs      int
	MemoryMiB int64
	// HostMemory is what the running VM holds of the host's memory (0 when unknown), and
	// Reclaim how it gives memory back.
	HostMemory uint64
	Reclaim    string
	DiskGiB    int64
	DiskUsed   uint64 // bytes used on the data disk, 0 when unknown
	DiskBytes  uint64
	Engine     string // engine version, "" when unknown
	Forwards   []agentapi.Forward
	Warnings   []string
}

// Active reports whether the machine has a live agent.
func (m Machine) Active() bool {
	return m.State == machine.StateRunning || m.State == machine.StateStarting || m.State == machine.StateStopping
}

// Message is the last outcome shown in the status bar.
type Message struct {
	Text  string
	Error bool
	Time  time.Time
}

// Snapshot is a consistent copy of everything the views render.
type Snapshot struct {
	Machines   []Machine
	Selected   string
	Containers []engine.Container
	Images     []engine.Image
	EngineErr  string // why the selected machine's engine cannot be shown
	Message    Message
}

// Machine returns the named machine of the snapshot.
func (s Snapshot) Machine(name string) (Machine, bool) {
	for _, m := range s.Machines {
		if m.Name == name {
			return m, true
		}
	}
	return Machine{}, false
}

// Indicator sums all machines up for the tray icon.
type Indicator int

const (
	IndicatorIdle    Indicator = iota // nothing running
	IndicatorRunning                  // at least one machine runs
	IndicatorBusy                     // one is starting or stopping
	IndicatorCrashed                  // one has crashed: the user must look
)

// Indicator picks the most urgent state of any machine.
func (s Snapshot) Indicator() Indicator {
	ind := IndicatorIdle
	for _, m := range s.Machines {
		var i Indicator
		switch {
		case m.State == machine.StateCrashed:
			i = IndicatorCrashed
		case m.State == machine.StateStarting || m.State == machine.StateStopping || m.Busy != "":
			i = IndicatorBusy
		case m.State == machine.StateRunning:
			i = IndicatorRunning
		}
		if i > ind {
			ind = i
		}
	}
	return ind
}

// Change says which part of the snapshot changed, so views redraw only that.
type Change uint

const (
	ChangeMachines Change = 1 << iota
	ChangeContainers
	ChangeImages
	ChangeLogs
	ChangeMessage
	ChangeAll = ChangeMachines | ChangeContainers | ChangeImages | ChangeLogs | ChangeMessage
)

// Options tunes the model; zero values pick sensible defaults.
type Options struct {
	// Poll is how often the machine list and machines without a live agent are re-read.
	Poll time.Duration
	// Refresh is how often the container list is re-read even without events, so the
	// uptime text stays current.
	Refresh time.Duration
	// StopTimeout bounds a graceful machine stop before the agent forces it.
	StopTimeout time.Duration
	// LogTail is how many lines of a container's past output the logs view starts with.
	LogTail int
	// MaxLogLines bounds the lines kept for the logs view.
	MaxLogLines int
}

func (o *Options) defaults() {
	if o.Poll == 0 {
		o.Poll = 2 * time.Second
	}
	if o.Refresh == 0 {
		o.Refresh = 15 * time.Second
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = 30 * time.Second
	}
	if o.LogTail == 0 {
		o.LogTail = 200
	}
	if o.MaxLogLines == 0 {
		o.MaxLogLines = 2000
	}
}

// Model is the controller behind the tray and the dashboard.
type Model struct {
	src     Source
	starter Starter
	opt     Options

	mu         sync.Mutex
	ctx        context.Context
	machines   map[string]*Machine
	watchers   map[string]*watcher
	selected   string
	chosen     bool // the user picked the selection; do not move it for them
	engWatch   *engineWatch
	containers []engine.Container
	images     []engine.Image
	engineErr  string
	msg        Message
	logID      string
	logLines   []engine.LogLine
	logCancel  context.CancelFunc
	listeners  []func(Change)
}

type watcher struct {
	cancel context.CancelFunc
	wake   chan struct{}
}

type engineWatch struct {
	name    string
	cancel  context.CancelFunc
	refresh chan struct{}
}

// New returns a model; call Run to start watching.
func New(src Source, starter Starter, opt Options) *Model {
	opt.defaults()
	return &Model{src: src, starter: starter, opt: opt, ctx: context.Background(),
		machines: map[string]*Machine{}, watchers: map[string]*watcher{}}
}

// OnChange registers fn to be called (from any goroutine) after the snapshot changes.
func (m *Model) OnChange(fn func(Change)) {
	m.mu.Lock()
	m.listeners = append(m.listeners, fn)
	m.mu.Unlock()
}

func (m *Model) notify(c Change) {
	m.mu.Lock()
	ls := append([](func(Change))(nil), m.listeners...)
	m.mu.Unlock()
	for _, l := range ls {
		l(c)
	}
}

// Snapshot returns a copy of the current state.
func (m *Model) Snapshot() Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := Snapshot{Selected: m.selected, EngineErr: m.engineErr, Message: m.msg,
		Containers: append([]engine.Container(nil), m.containers...),
		Images:     append([]engine.Image(nil), m.images...)}
	for _, mc := range m.machines {
		c := *mc
		c.Forwards = append([]agentapi.Forward(nil), mc.Forwards...)
		s.Machines = append(s.Machines, c)
	}
	sort.Slice(s.Machines, func(i, j int) bool { return s.Machines[i].Name < s.Machines[j].Name })
	return s
}

// Logs returns the container whose logs are followed and its lines so far.
func (m *Model) Logs() (string, []engine.LogLine) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.logID, append([]engine.LogLine(nil), m.logLines...)
}

// Run watches machines until ctx ends. Ending it stops only the watching: machines and
// machine starts under way are left alone.
func (m *Model) Run(ctx context.Context) {
	m.mu.Lock()
	m.ctx = ctx
	m.mu.Unlock()
	t := time.NewTicker(m.opt.Poll)
	defer t.Stop()
	for {
		m.scan(ctx)
		select {
		case <-ctx.Done():
			m.mu.Lock()
			if m.logCancel != nil {
				m.logCancel()
			}
			m.mu.Unlock()
			return
		case <-t.C:
		}
	}
}

// scan picks up machines created or removed since the last look.
func (m *Model) scan(ctx context.Context) {
	names, err := m.src.List(ctx)
	if err != nil {
		m.setMessage(fmt.Errorf("list machines: %w", err))
		return
	}
	m.mu.Lock()
	want := map[string]bool{}
	changed := false
	for _, n := range names {
		want[n] = true
		if _, ok := m.machines[n]; ok {
			continue
		}
		mc := &Machine{Name: n, State: machine.StateStopped}
		if sp, err := m.src.Spec(n); err == nil {
			mc.CPUs, mc.MemoryMiB, mc.DiskGiB = sp.CPUs, sp.MemoryMiB, sp.DiskGiB
		}
		m.machines[n] = mc
		wctx, cancel := context.WithCancel(ctx)
		w := &watcher{cancel: cancel, wake: make(chan struct{}, 1)}
		m.watchers[n] = w
		go m.watchMachine(wctx, n, w.wake)
		changed = true
	}
	for n, w := range m.watchers {
		if !want[n] {
			w.cancel()
			delete(m.watchers, n)
			delete(m.machines, n)
			changed = true
		}
	}
	// Select the first machine so the dashboard never opens empty-handed.
	if (m.selected == "" || m.machines[m.selected] == nil) && len(names) > 0 {
		m.selected = names[0]
		for _, n := range names {
			if m.machines[n].Active() {
				m.selected = n
				break
			}
		}
		changed = true
	}
	m.mu.Unlock()
	if changed {
		m.syncEngineWatch()
		m.notify(ChangeMachines | ChangeContainers | ChangeImages)
	}
}

// Wake makes a machine's watcher re-read its status now rather than at the next poll.
func (m *Model) wake(name string) {
	m.mu.Lock()
	w := m.watchers[name]
	m.mu.Unlock()
	if w != nil {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

func (m *Model) watchMachine(ctx context.Context, name string, wake chan struct{}) {
	for ctx.Err() == nil {
		st := m.src.Status(ctx, name)
		if ctx.Err() != nil {
			return
		}
		m.applyStatus(name, st)
		if st.Agent != nil {
			go m.refreshDetails(ctx, name)
			// The stream ends when the agent goes away; then the status is read again.
			m.src.Agent(name).Events(ctx, func(e agentapi.Event) error { m.applyAgentEvent(name, e); return nil })
			pause(ctx, wake, min(m.opt.Poll, 500*time.Millisecond))
			continue
		}
		pause(ctx, wake, m.opt.Poll)
	}
}

func pause(ctx context.Context, wake <-chan struct{}, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-wake:
	case <-t.C:
	}
}

func (m *Model) applyStatus(name string, st machine.Status) {
	m.mu.Lock()
	mc := m.machines[name]
	if mc == nil {
		m.mu.Unlock()
		return
	}
	mc.State, mc.Reason = st.State, st.Reason
	if st.Agent != nil {
		mc.Forwards = st.Agent.Forwards
		mc.Warnings = st.Agent.Warnings
		if mem := st.Agent.Memory; mem != nil {
			mc.HostMemory, mc.Reclaim = mem.HostBytes, mem.Reclaim
		}
	}
	if !mc.Active() {
		mc.Forwards, mc.Engine, mc.DiskUsed, mc.DiskBytes, mc.HostMemory = nil, "", 0, 0, 0
	}
	// Until the user picks one, show a running machine rather than a stopped one.
	if cur := m.machines[m.selected]; !m.chosen && mc.State == machine.StateRunning && (cur == nil || cur.State != machine.StateRunning) {
		m.selected = name
	}
	m.mu.Unlock()
	m.syncEngineWatch()
	m.notify(ChangeAll)
}

func (m *Model) applyAgentEvent(name string, e agentapi.Event) {
	m.mu.Lock()
	mc := m.machines[name]
	if mc == nil {
		m.mu.Unlock()
		return
	}
	wasRunning := mc.State == machine.StateRunning
	switch e.Type {
	case "phase":
		mc.State = machine.State(e.Phase)
		mc.Reason = ""
	case "forwards":
		mc.Forwards = e.Forwards
	default:
		m.mu.Unlock()
		return
	}
	nowRunning := mc.State == machine.StateRunning
	ctx := m.ctx
	m.mu.Unlock()
	if nowRunning && !wasRunning {
		go m.refreshDetails(ctx, name)
	}
	m.syncEngineWatch()
	m.notify(ChangeMachines)
}

// refreshDetails reads what the agent state does not carry: engine version and disk use.
func (m *Model) refreshDetails(ctx context.Context, name string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var ver string
	if v, err := m.src.Engine(name).Version(ctx); err == nil {
		ver = v.Version
	}
	var used, total uint64
	if r, err := m.src.Agent(name).Control(ctx, forward.ControlRequest{Op: forward.OpInfo}); err == nil && r.Info != nil {
		used, total = r.Info.DataDiskUsed, r.Info.DataDiskBytes
	}
	m.mu.Lock()
	mc := m.machines[name]
	if mc != nil {
		if ver != "" {
			mc.Engine = ver
		}
		if total != 0 {
			mc.DiskUsed, mc.DiskBytes = used, total
		}
	}
	m.mu.Unlock()
	m.notify(ChangeMachines)
}

// Select makes name the machine whose containers and images are shown.
func (m *Model) Select(name string) {
	m.mu.Lock()
	if m.selected == name {
		m.mu.Unlock()
		return
	}
	m.selected, m.chosen = name, true
	m.mu.Unlock()
	m.FollowLogs("")
	m.syncEngineWatch()
	m.notify(ChangeAll)
	go m.refreshDetails(m.context(), name)
}

func (m *Model) context() context.Context {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ctx
}

// syncEngineWatch keeps exactly one engine watcher: on the selected machine while it runs.
func (m *Model) syncEngineWatch() {
	m.mu.Lock()
	want := ""
	if mc := m.machines[m.selected]; mc != nil && mc.State == machine.StateRunning {
		want = mc.Name
	}
	if m.engWatch != nil && m.engWatch.name == want {
		m.mu.Unlock()
		return
	}
	if m.engWatch != nil {
		m.engWatch.cancel()
		m.engWatch = nil
	}
	changed := len(m.containers) > 0 || len(m.images) > 0 || m.engineErr != ""
	m.containers, m.images, m.engineErr = nil, nil, ""
	if want != "" {
		ctx, cancel := context.WithCancel(m.ctx)
		w := &engineWatch{name: want, cancel: cancel, refresh: make(chan struct{}, 1)}
		m.engWatch = w
		go m.watchEngine(ctx, w)
	}
	m.mu.Unlock()
	if changed {
		m.notify(ChangeContainers | ChangeImages)
	}
}

func (m *Model) watchEngine(ctx context.Context, w *engineWatch) {
	eng := m.src.Engine(w.name)
	go func() {
		t := time.NewTicker(m.opt.Refresh)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				kick(w.refresh)
			}
		}
	}()
	for ctx.Err() == nil {
		m.refreshEngine(ctx, w.name, eng)
		done := make(chan error, 1)
		go func() {
			// Any container or image event re-reads the lists; a burst of events
			// coalesces into one read through the one-slot channel.
			done <- eng.Events(ctx, func(engine.Event) { kick(w.refresh) })
		}()
	stream:
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.refresh:
				m.refreshEngine(ctx, w.name, eng)
			case err := <-done:
				if ctx.Err() == nil && err != nil {
					m.setEngineErr(w.name, fmt.Errorf("engine events: %w", err))
				}
				break stream
			}
		}
		pause(ctx, nil, time.Second)
	}
}

func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (m *Model) setEngineErr(name string, err error) {
	m.mu.Lock()
	if m.selected != name {
		m.mu.Unlock()
		return
	}
	m.engineErr = err.Error()
	m.mu.Unlock()
	m.notify(ChangeContainers)
}

func (m *Model) refreshEngine(ctx context.Context, name string, eng Engine) {
	cs, cerr := eng.Containers(ctx)
	is, ierr := eng.Images(ctx)
	if ctx.Err() != nil {
		return
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].Name() < cs[j].Name() })
	sort.Slice(is, func(i, j int) bool { return is[i].Tag() < is[j].Tag() })
	m.mu.Lock()
	if m.selected != name || m.engWatch == nil || m.engWatch.name != name {
		m.mu.Unlock()
		return
	}
	m.engineErr = ""
	if err := errors.Join(cerr, ierr); err != nil {
		m.engineErr = err.Error()
	}
	if cerr == nil {
		m.containers = cs
	}
	if ierr == nil {
		m.images = is
	}
	m.mu.Unlock()
	m.notify(ChangeContainers | ChangeImages)
}

// Refresh re-reads the selected machine's containers and images now.
func (m *Model) Refresh() {
	m.mu.Lock()
	w := m.engWatch
	m.mu.Unlock()
	if w != nil {
		kick(w.refresh)
	}
}

func (m *Model) setMessage(err error) {
	m.mu.Lock()
	m.msg = Message{Text: err.Error(), Error: true, Time: time.Now()}
	m.mu.Unlock()
	m.notify(ChangeMessage)
}

// Info shows a message that is not an error.
func (m *Model) Info(text string) {
	m.mu.Lock()
	m.msg = Message{Text: text, Time: time.Now()}
	m.mu.Unlock()
	m.notify(ChangeMessage)
}

// Fail shows an error in the status bar and returns it.
func (m *Model) Fail(err error) error {
	if err != nil {
		m.setMessage(err)
	}
	return err
}

func (m *Model) setBusy(name, busy string) {
	m.mu.Lock()
	if mc := m.machines[name]; mc != nil {
		mc.Busy = busy
	}
	m.mu.Unlock()
	m.notify(ChangeMachines)
}

// StartMachine starts a stopped or crashed machine through the CLI.
func (m *Model) StartMachine(ctx context.Context, name string) error {
	m.setBusy(name, "starting")
	defer m.wake(name)
	defer m.setBusy(name, "")
	if err := m.starter.Start(ctx, name); err != nil {
		return m.Fail(fmt.Errorf("start %s: %w", name, err))
	}
	m.Info(name + " started")
	return nil
}

// StopMachine asks the machine's agent for a graceful stop.
func (m *Model) StopMachine(ctx context.Context, name string) error {
	m.setBusy(name, "stopping")
	defer m.wake(name)
	defer m.setBusy(name, "")
	req := agentapi.StopRequest{Timeout: m.opt.StopTimeout}
	var err error
	if s, ok := m.starter.(Stopper); ok {
		err = s.Stop(ctx, name, req)
	} else {
		_, err = m.src.Agent(name).Stop(ctx, req)
	}
	if err != nil {
		return m.Fail(fmt.Errorf("stop %s: %w", name, err))
	}
	m.Info(name + " stopped")
	return nil
}

// RestartMachine stops the machine if it runs, then starts it.
func (m *Model) RestartMachine(ctx context.Context, name string) error {
	if mc, ok := m.Snapshot().Machine(name); ok && mc.Active() {
		if err := m.StopMachine(ctx, name); err != nil {
			return err
		}
	}
	return m.StartMachine(ctx, name)
}

// selectedEngine returns the engine of the selected machine, or an error saying why none.
func (m *Model) selectedEngine() (Engine, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mc := m.machines[m.selected]
	if mc == nil || mc.State != machine.StateRunning {
		return nil, fmt.Errorf("machine %q is not running", m.selected)
	}
	return m.src.Engine(m.selected), nil
}

// ContainerDo starts, stops, restarts or removes a container of the selected machine.
func (m *Model) ContainerDo(ctx context.Context, id string, a engine.Action) error {
	eng, err := m.selectedEngine()
	if err != nil {
		return m.Fail(err)
	}
	name := m.containerName(id)
	if err := eng.Do(ctx, id, a); err != nil {
		return m.Fail(fmt.Errorf("%s %s: %w", a, name, err))
	}
	m.Info(fmt.Sprintf("%s: %s done", name, a))
	m.Refresh()
	return nil
}

func (m *Model) containerName(id string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.containers {
		if c.ID == id {
			return c.Name()
		}
	}
	return id
}

// RemoveImage deletes an image of the selected machine.
func (m *Model) RemoveImage(ctx context.Context, id string) error {
	eng, err := m.selectedEngine()
	if err != nil {
		return m.Fail(err)
	}
	if err := eng.RemoveImage(ctx, id); err != nil {
		return m.Fail(fmt.Errorf("remove image: %w", err))
	}
	m.Info("image removed")
	m.Refresh()
	return nil
}

// FollowLogs shows the output of container id of the selected machine, following it;
// "" stops following.
func (m *Model) FollowLogs(id string) {
	m.mu.Lock()
	if m.logCancel != nil {
		m.logCancel()
		m.logCancel = nil
	}
	m.logID, m.logLines = id, nil
	var eng Engine
	if mc := m.machines[m.selected]; id != "" && mc != nil && mc.State == machine.StateRunning {
		eng = m.src.Engine(m.selected)
	}
	var ctx context.Context
	if eng != nil {
		ctx, m.logCancel = context.WithCancel(m.ctx)
	}
	m.mu.Unlock()
	m.notify(ChangeLogs)
	if eng == nil {
		return
	}
	go func() {
		err := eng.Logs(ctx, id, m.opt.LogTail, func(l engine.LogLine) { m.appendLog(ctx, l) })
		if ctx.Err() == nil {
			text := "(end of output)"
			if err != nil {
				text = "(logs stopped: " + err.Error() + ")"
			}
			m.appendLog(ctx, engine.LogLine{Stream: "skiff", Text: text})
		}
	}()
}

func (m *Model) appendLog(ctx context.Context, l engine.LogLine) {
	m.mu.Lock()
	if ctx.Err() != nil { // a newer follow replaced this one
		m.mu.Unlock()
		return
	}
	m.logLines = append(m.logLines, l)
	if over := len(m.logLines) - m.opt.MaxLogLines; over > 0 {
		m.logLines = append([]engine.LogLine(nil), m.logLines[over:]...)
	}
	m.mu.Unlock()
	m.notify(ChangeLogs)
}

// EnvLine is the shell line that points DOCKER_HOST at the machine's engine.
func (m *Model) EnvLine(name string) (string, error) {
	sh := hostenv.ShellPOSIX
	if runtime.GOOS == "windows" {
		sh = hostenv.ShellPowerShell
	}
	return hostenv.EnvLines(sh, m.src.EngineSocket(name))
}

// AgentLog is the path of the machine's host agent log.
func (m *Model) AgentLog(name string) string { return m.src.LogPath(name) }
