// Package hostagent owns one running machine: the VM, its user-mode network, the
// transport to the guest and every forwarder, and the control API on the machine's
// socket. One agent process per machine, detached from the CLI, so a crash of one
// machine's agent never touches another, and closing a GUI never stops a machine.
package hostagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/skiff-dev/skiff/forward"
	"github.com/skiff-dev/skiff/forward/engineproxy"
	"github.com/skiff-dev/skiff/forward/fsevents"
	"github.com/skiff-dev/skiff/forward/hostports"
	"github.com/skiff-dev/skiff/forward/pathmap"
	"github.com/skiff-dev/skiff/forward/share9p"
	"github.com/skiff-dev/skiff/forward/transport"
	"github.com/skiff-dev/skiff/forward/usernet"
	"github.com/skiff-dev/skiff/images"
	"github.com/skiff-dev/skiff/images/seed"
	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/machine/agentapi"
	"github.com/skiff-dev/skiff/machine/atomicfile"
	"github.com/skiff-dev/skiff/machine/errdefs"
	"github.com/skiff-dev/skiff/vmm"
	"golang.org/x/sync/errgroup"
)

// Ports of the transport on the virtual network.
const (
	GuestAgentPort = 1024
	HostAgentPort  = 1025
	VsockPort      = 1024
)

// ReadyTimeout bounds a cold boot under software emulation.
var ReadyTimeout = 5 * time.Minute

// Agent runs one machine.
//
// Concurrency: the fields up to mu are set by Run before the control server starts and
// never written again. vm, guest and ports are written only by Run's goroutine, always
// under mu; other goroutines (the control API, time sync) read them through current and
// portManager. Everything else below mu is read and written under it. Every goroutine the
// agent starts belongs to its group, which Run waits for before it returns.
type Agent struct {
	Dir     machine.Dir
	Spec    *machine.Spec
	Backend vmm.Backend
	Log     *log.Logger

	secret    []byte
	net       *usernet.Network
	startedAt time.Time
	cfg       vmm.Config
	netGroup  groupPorts // the guest's listeners as last given to the ports (netgroup.go)
	// resumedForwards are the forwards a warm start's saved state held, for
	// startForwarders; only Run's goroutine uses them.
	resumedForwards *hostports.Sources
	group           *errgroup.Group
	readySig        chan struct{} // closed when ready is first set
	stopReq         chan agentapi.StopRequest
	stopped         chan struct{} // closed once the machine is down, however it ended
	stopOnce        sync.Once

	mu          sync.Mutex
	vm          vmm.VM
	guest       transport.Dialer
	ports       *hostports.Manager
	fileEvents  *fsevents.Host
	vmStartedAt *time.Time
	boot        *agentapi.Boot
	stopResult  agentapi.StopResult
	phase       agentapi.Phase
	ready       *forward.Ready
	readyAt     *time.Time
	warnings    []string
	subs        map[chan agentapi.Event]bool
	mem         *memWatch // the balloon policy's view, when it runs
}

func (a *Agent) logf(format string, args ...any) { a.Log.Printf(format, args...) }

// goAgent runs fn in the agent's group: Run does not return before fn has. An error fn
// returns while the agent is still running is logged; it does not stop the machine.
func (a *Agent) goAgent(ctx context.Context, what string, fn func(context.Context) error) {
	a.group.Go(func() error {
		if err := fn(ctx); err != nil && ctx.Err() == nil {
			a.logf("%s: %v", what, err)
		}
		return nil
	})
}

// current is the running VM and the dialer of its guest agent (nil before the boot).
func (a *Agent) current() (vmm.VM, transport.Dialer) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.vm, a.guest
}

// setVM records the VM Run booted and how to reach its guest.
func (a *Agent) setVM(vm vmm.VM, guest transport.Dialer) {
	a.mu.Lock()
	old := a.guest
	a.vm, a.guest = vm, guest
	a.mu.Unlock()
	// The streams the old dialer parked went to the old VM.
	if c, ok := old.(io.Closer); ok && old != guest {
		c.Close()
	}
}

// portManager is the published-port manager, nil until the machine runs.
func (a *Agent) portManager() *hostports.Manager {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ports
}

// killVM stops the VM at once, if there is one.
func (a *Agent) killVM() {
	if vm, _ := a.current(); vm != nil {
		vm.Kill(context.Background())
	}
}

func (a *Agent) setPhase(p agentapi.Phase) {
	a.mu.Lock()
	a.phase = p
	a.mu.Unlock()
	a.logf("phase: %s", p)
	a.publish(agentapi.Event{Type: "phase", Phase: p})
}

func (a *Agent) publish(e agentapi.Event) {
	e.Time = time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if e.Phase == "" {
		e.Phase = a.phase
	}
	for ch := range a.subs {
		select {
		case ch <- e:
		default: // a slow subscriber misses events rather than stalling the agent
		}
	}
}

func (a *Agent) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	a.logf("warning: %s", msg)
	a.mu.Lock()
	a.warnings = append(a.warnings, msg)
	a.mu.Unlock()
}

// ErrCrashed is returned when the VM ended without being asked to.
var ErrCrashed = errors.New("the VM stopped unexpectedly")

// Run starts the machine and serves it until it is stopped. A clean stop removes the pid
// file; any other exit leaves it, which is how status tells "crashed" from "stopped".
func (a *Agent) Run(ctx context.Context) (err error) {
	a.startedAt = time.Now()
	a.subs = map[chan agentapi.Event]bool{}
	a.stopReq = make(chan agentapi.StopRequest, 1)
	a.stopped = make(chan struct{})
	a.readySig = make(chan struct{})
	a.phase = agentapi.PhaseStarting
	ctx, cancel := context.WithCancel(ctx)
	a.group = &errgroup.Group{}
	// Last on every path: nothing the agent started outlives Run, the VM included.
	defer func() {
		cancel()
		a.killVM()
		a.group.Wait()
	}()

	lock, err := machine.TryLockFor(a.Dir.File(machine.FileAgentLock), 500*time.Millisecond)
	if err != nil {
		if errors.Is(err, machine.ErrLocked) {
			return fmt.Errorf("machine %q already has a running agent", a.Dir.Name)
		}
		return err
	}
	defer lock.Unlock()
	if err := os.WriteFile(a.Dir.File(machine.FileAgentPID), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		return err
	}
	clean := false
	defer func() {
		if clean {
			os.Remove(a.Dir.File(machine.FileAgentPID))
		}
	}()
	if err := a.Dir.EnsureRun(); err != nil {
		return err
	}
	for _, s := range []string{machine.SockControl, machine.SockEngine} {
		os.Remove(a.Dir.Sock(s))
	}
	killStaleVM(a.Dir)

	if a.secret, err = os.ReadFile(a.Dir.File(machine.FileSecret)); err != nil {
		return fmt.Errorf("machine secret: %w", err)
	}
	if a.net, err = usernet.New(usernet.Options{Secret: a.secret, NoHostLoopback: a.Spec.NoHostLoopback, GroupHosts: a.groupHosts()}); err != nil {
		return err
	}
	go a.refreshGroupHosts(ctx)
	if err := a.serveHost(ctx); err != nil {
		return err
	}
	ctl, err := a.serveControl(ctx)
	if err != nil {
		return err
	}
	// Let the callers of stop get their answer before the process exits; event streams
	// end once the machine is marked stopped, however it ended, after the reason.
	defer func() {
		if err != nil {
			a.publish(agentapi.Event{Type: agentapi.EventError, Message: err.Error()})
		}
		a.markStopped()
		c, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		ctl.Shutdown(c)
	}()

	if a.cfg, err = a.vmConfig(ctx); err != nil {
		return err
	}
	vmDone, err := a.bootVM(ctx)
	if err != nil {
		return err
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	timeout := time.NewTimer(ReadyTimeout)
	defer timeout.Stop()

	for retries := 0; ; {
		select {
		case <-a.readySig:
		case err := <-vmDone:
			// See vmm.BootPanic: boot again, twice at most.
			if kept := a.keptPanic(); kept != "" {
				if retries == 2 {
					return fmt.Errorf("%w during boot: the guest kernel panicked 3 times (the last console is in %s)", ErrCrashed, kept)
				}
				retries++
				a.logf("the guest kernel panicked during boot (its console is kept in %s); booting again", kept)
				if vmDone, err = a.bootVM(ctx); err != nil {
					return err
				}
				continue
			}
			return fmt.Errorf("%w during boot: %s", ErrCrashed, a.vmEnd(err))
		case <-timeout.C:
			return fmt.Errorf("the guest did not signal ready within %s", ReadyTimeout)
		case req := <-a.stopReq:
			clean = true
			req.Cold = true // a guest still booting has nothing worth saving
			return a.shutdown(req, vmDone)
		case s := <-sigs:
			clean = true
			return a.shutdown(agentapi.StopRequest{Force: s == syscall.SIGINT, Cold: true}, vmDone)
		}
		break
	}
	a.setPhase(agentapi.PhaseRunning)
	a.goAgent(ctx, "free memory", a.freeMemory)
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	if err := a.startForwarders(runCtx); err != nil {
		return err
	}
	a.goAgent(runCtx, "time sync", func(ctx context.Context) error { a.timeSync(ctx); return nil })
	if vm, guest := a.current(); vmm.Features(a.Backend, vm).Reclaim == vmm.ReclaimBalloon {
		a.goAgent(runCtx, "memory", func(ctx context.Context) error { a.runBalloon(ctx, vm, guest); return nil })
	}

	select {
	case err := <-vmDone:
		if kept := a.keptPanic(); kept != "" {
			return fmt.Errorf("%w: the guest kernel panicked (its console is kept in %s)", ErrCrashed, kept)
		}
		return fmt.Errorf("%w: %s", ErrCrashed, a.vmEnd(err))
	case req := <-a.stopReq:
		clean = true
		cancelRun()
		return a.shutdown(req, vmDone)
	case s := <-sigs:
		clean = true
		cancelRun()
		// SIGTERM comes from the OS going down (logout, reboot): save the machine then too.
		return a.shutdown(agentapi.StopRequest{Cold: s != syscall.SIGTERM}, vmDone)
	}
}

// startVM resumes the machine from its saved state when that is safe, else boots it.
func (a *Agent) startVM(ctx context.Context) error {
	began := time.Now()
	vm, forwards, why := a.restore(ctx, a.cfg)
	if vm != nil {
		restored := time.Now()
		a.setVM(vm, a.guestDialer(vm))
		a.serveHostVsock(ctx, vm)
		steps, err := a.resumeGuest(ctx)
		if err == nil {
			a.logf("VM restored in %s, guest resumed in %s (agent up %s before)", restored.Sub(began).Round(time.Millisecond),
				time.Since(restored).Round(time.Millisecond), began.Sub(a.startedAt).Round(time.Millisecond))
			a.setBoot(agentapi.Boot{Warm: true, Steps: append([]forward.Step{stepOf("restore", restored.Sub(began))}, steps...)})
			a.resumedForwards = forwards
			return nil
		}
		vm.Kill(context.Background())
		vm.Wait(context.Background())
		why = err.Error()
	}
	a.mu.Lock()
	if why == "" && a.boot != nil {
		// A boot again after a panic: the first attempt set the saved state aside, and
		// its reason for booting cold is still the one to report.
		why = a.boot.Reason
	}
	a.mu.Unlock()
	a.setBoot(agentapi.Boot{Reason: why})
	if err := a.writeSeed(); err != nil {
		return err
	}
	vm, err := a.Backend.Start(ctx, a.cfg)
	if err != nil {
		return fmt.Errorf("start VM: %w", err)
	}
	a.setVM(vm, a.guestDialer(vm))
	a.serveHostVsock(ctx, vm)
	return nil
}

// bootVM starts the VM (restored or cold) and returns the channel its end arrives on.
func (a *Agent) bootVM(ctx context.Context) (chan error, error) {
	vmStart := time.Now()
	a.mu.Lock()
	a.vmStartedAt = &vmStart
	a.mu.Unlock()
	if err := a.startVM(ctx); err != nil {
		return nil, err
	}
	if d, ok := a.vm.(vmm.Describer); ok {
		a.logf("VM started: %v", d.Describe())
	}
	vmDone := make(chan error, 1)
	vm := a.vm
	// Ends when the VM does; Run kills the VM on every way out.
	a.group.Go(func() error { vmDone <- vm.Wait(context.Background()); return nil })
	return vmDone, nil
}

// vmEnd says how a VM that ended unasked ended: the hypervisor's error, or, when the guest
// powered off by itself, the guest agent's last word on the console (why it stopped).
func (a *Agent) vmEnd(err error) string {
	if err != nil {
		return err.Error()
	}
	why := "the guest powered off by itself"
	if last := lastAgentLine(a.Dir.File(machine.FileSerialLog)); last != "" {
		why += ": " + last
	}
	return why
}

// lastAgentLine is the guest agent's last line in the console log at path.
func lastAgentLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const tailBytes = 16 << 10
	if st, err := f.Stat(); err == nil && st.Size() > tailBytes {
		f.Seek(st.Size()-tailBytes, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	last := ""
	for _, l := range strings.Split(string(b), "\n") {
		if _, after, ok := strings.Cut(l, "skiff-agent: "); ok {
			last = strings.TrimSpace(after)
		}
	}
	return last
}

// keptPanic checks the console of a VM that ended unasked for a kernel panic and, if there
// is one, keeps it beside the log (the next boot overwrites the console) and returns where.
func (a *Agent) keptPanic() string {
	serial := a.Dir.File(machine.FileSerialLog)
	b, _ := os.ReadFile(serial)
	if !vmm.BootPanic(b) {
		return ""
	}
	os.WriteFile(serial+".panic", b, 0o600)
	return serial + ".panic"
}

// shutdown stops the guest through its agent (engine stop, sync, poweroff) and forces the
// VM off when that does not finish in time.
func (a *Agent) shutdown(req agentapi.StopRequest, vmDone chan error) error {
	a.setPhase(agentapi.PhaseStopping)
	var forwards hostports.Sources
	if p := a.portManager(); p != nil {
		forwards = p.Sources() // for a suspend, before they go
		p.Close()
	}
	if req.Timeout == 0 {
		req.Timeout = 60 * time.Second
	}
	if !req.Force && !req.Cold {
		err := a.suspend(a.cfg, forwards)
		if err == nil || errors.Is(err, errSuspendedUnsaved) {
			if err != nil {
				a.warn("%v", err)
			} else {
				a.mu.Lock()
				a.stopResult.Suspended = true
				a.mu.Unlock()
				a.logf("VM suspended: state saved in %s", a.Dir.File(machine.DirSavedState))
			}
			select {
			case <-vmDone:
			case <-time.After(10 * time.Second):
				a.vm.Kill(context.Background())
			}
			a.markStopped()
			return nil
		}
		// A backend that cannot suspend here (an Intel Mac, macOS 13) shuts down quietly.
		if !errors.Is(err, errNoSuspend) && !errors.Is(err, vmm.ErrNotSupported) {
			a.warn("could not suspend (%v); shutting down instead", err)
			a.mu.Lock()
			a.stopResult.NotSuspended = err.Error()
			a.mu.Unlock()
		}
	}
	if !req.Force {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := a.control(ctx, forward.ControlRequest{Op: forward.OpShutdown})
		cancel()
		if err != nil {
			a.logf("graceful shutdown request failed (%v); forcing", err)
		} else {
			select {
			case <-vmDone:
				a.logf("VM powered off")
				a.markStopped()
				return nil
			case <-time.After(req.Timeout):
				a.logf("VM did not power off within %s; forcing", req.Timeout)
			}
		}
	}
	a.vm.Kill(context.Background())
	a.logf("VM killed")
	a.markStopped()
	return nil
}

func (a *Agent) markStopped() { a.stopOnce.Do(func() { close(a.stopped) }) }

// Transport media: how the host reaches the guest agent.
const (
	mediumVsock   = "vsock"   // the VM's socket device (vsock, hvsock)
	mediumNetwork = "network" // a TCP stream through the user-mode network
)

// medium is how the host reaches vm's guest agent: its socket device where it has one.
func medium(vm vmm.VM) string {
	if _, ok := vm.(vmm.GuestDialer); ok {
		return mediumVsock
	}
	return mediumNetwork
}

// parkedStreams is how many authenticated streams to the guest are kept parked
// (transport.Client.Parked): a docker command's connection or a published port's then
// costs one round trip to the guest agent, not a connect and the handshake's two.
const parkedStreams = 4

// engineAhead is how many engine streams a docker machine's client keeps opened ahead
// (transport.Client.Ahead): dockerd holds each, waiting for a request, so a docker
// command's connection reaches it with no round trip to the guest agent. Podman's
// service is not known to keep a silent connection for minutes, so it gets none.
const engineAhead = 2

// guestDialer reaches vm's guest agent: over its socket device where it has one.
func (a *Agent) guestDialer(vm vmm.VM) transport.Dialer {
	c := &transport.Client{Secret: a.secret, Parked: parkedStreams, Raw: func(ctx context.Context) (net.Conn, error) {
		return a.net.DialGuest(ctx, GuestAgentPort)
	}}
	if gd, ok := vm.(vmm.GuestDialer); ok {
		c.Raw = func(ctx context.Context) (net.Conn, error) { return gd.DialGuest(ctx, VsockPort) }
	}
	if a.Spec.Engine != machine.EnginePodman {
		c.Ahead = map[string]int{forward.ServiceEngine: engineAhead}
	}
	return c
}

// serveHost listens inside the virtual network for streams the guest opens to the host.
func (a *Agent) serveHost(ctx context.Context) error {
	ln, err := a.net.ListenGateway(HostAgentPort)
	if err != nil {
		return fmt.Errorf("host transport: %w", err)
	}
	a.goAgent(ctx, "host transport", func(ctx context.Context) error {
		return transport.Serve(ctx, ln, a.secret, a.hostRoute, a.logf)
	})
	return nil
}

// serveHostVsock also takes the guest's streams on host vsock where the backend has its
// guest open them there (vmm.HostStreamer); a VM that cannot listen is logged, and the
// guest's readiness then never arrives, which the start reports.
func (a *Agent) serveHostVsock(ctx context.Context, vm vmm.VM) {
	port := hostStreamPort(a.Backend)
	if port == 0 {
		return
	}
	l, ok := vm.(vmm.HostListener)
	if !ok {
		a.warn("the backend has the guest reach the host over vsock, but its VM cannot listen there")
		return
	}
	ln, err := l.ListenGuest(port)
	if err != nil {
		a.warn("host transport on vsock port %d: %v", port, err)
		return
	}
	a.goAgent(ctx, "host transport on vsock", func(ctx context.Context) error {
		return transport.Serve(ctx, ln, a.secret, a.hostRoute, a.logf)
	})
}

// hostStreamPort is the host vsock port b's guests open their streams to; 0 for the network.
func hostStreamPort(b vmm.Backend) uint32 {
	if s, ok := b.(vmm.HostStreamer); ok {
		return s.HostStreamPort()
	}
	return 0
}

// hostRoute picks the host service a guest's stream asks for.
func (a *Agent) hostRoute(service string) (transport.Handler, error) {
	if service == forward.HostServiceReady {
		return a.onReady, nil
	}
	if tag, ok := strings.CutPrefix(service, forward.HostPrefix9P); ok {
		for i, m := range a.Spec.Mounts {
			if shareTag(i) == tag && a.mountShareType(m) == shareOverTransport {
				opt := share9p.Options{Root: m.HostPath, ReadOnly: m.ReadOnly, Deny: a.skiffData(), Logf: a.logf}
				return func(ctx context.Context, _ string, conn net.Conn) {
					if err := share9p.Serve(ctx, conn, opt); err != nil {
						a.logf("share %s: %v", m.HostPath, err)
					}
				}, nil
			}
		}
	}
	return nil, fmt.Errorf("unknown host service %q", service)
}

func (a *Agent) onReady(ctx context.Context, _ string, conn net.Conn) {
	defer conn.Close()
	var r forward.Ready
	if err := json.NewDecoder(conn).Decode(&r); err != nil {
		a.logf("ready: %v", err)
		return
	}
	if now, first := a.setReady(&r); first {
		for _, w := range r.Warnings {
			a.warn("guest: %s", w)
		}
		a.logf("guest ready: engine API %s, guest uptime %dms, %s after VM start", r.EngineAPI, r.BootMillis, now.Sub(a.startedAt).Round(time.Millisecond))
	}
}

// setReady records what the guest reported when its engine answered; the first call
// wakes Run.
func (a *Agent) setReady(r *forward.Ready) (now time.Time, first bool) {
	now = time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	first = a.ready == nil
	a.ready, a.readyAt = r, &now
	if first {
		close(a.readySig)
	}
	return now, first
}

func (a *Agent) startForwarders(ctx context.Context) error {
	shares := []pathmap.Share{}
	for _, m := range a.Spec.Mounts {
		shares = append(shares, pathmap.Share{Host: m.HostPath, Guest: m.GuestPath})
	}
	paths, err := pathmap.New(shares, pathmap.DefaultPassthrough)
	if err != nil {
		return err
	}
	// No container bind-mounts Skiff's own data, whatever the shares hold.
	for _, p := range a.skiffData() {
		if err := paths.Deny(p); err != nil {
			return err
		}
	}
	guest := a.guest
	proxy := &engineproxy.Proxy{Dial: engineproxy.GuestDialer(guest, forward.ServiceEngine),
		DialFirst: engineproxy.GuestFirstDialer(guest, forward.ServiceEngine), Paths: paths, Logf: a.logf}
	if err := a.serveEngine(ctx, proxy); err != nil {
		return fmt.Errorf("engine endpoint: %w", err)
	}

	ports := &hostports.Manager{Guest: guest, BindAddr: a.Spec.PortBindAddress, Logf: a.logf,
		OnChange: func(f []agentapi.Forward) { a.publish(agentapi.Event{Type: agentapi.EventForwards, Forwards: f}) }}
	a.mu.Lock()
	a.ports = ports
	a.mu.Unlock()
	if a.resumedForwards != nil {
		// Bound before the guest is asked: its answers, cold under emulation, come later.
		ports.Restore(ctx, *a.resumedForwards)
		a.resumedForwards = nil
	}
	a.goAgent(ctx, "ports", func(ctx context.Context) error { a.watchPorts(ctx, guest, ports); return nil })
	a.goAgent(ctx, "engine events", func(ctx context.Context) error {
		ports.WatchEngine(ctx, engineproxy.GuestDialer(guest, forward.ServiceEngine))
		return nil
	})
	a.startFileEvents(ctx, guest)
	a.startKube(ctx, guest, ports)
	return nil
}

// watchPorts follows the guest's listener stream.
func (a *Agent) watchPorts(ctx context.Context, guest transport.Dialer, ports *hostports.Manager) {
	a.followGuest(ctx, guest, forward.ServicePorts, func(conn net.Conn) {
		dec := json.NewDecoder(conn)
		for {
			var ls []forward.Listener
			if err := dec.Decode(&ls); err != nil {
				return
			}
			ports.Update(ctx, a.kubeListeners(a.groupListeners(ls)))
		}
	})
}

// followGuest keeps a stream to a guest service open until ctx ends: serve reads it, and
// when it ends (the guest agent restarted, a suspend cut it) it is dialled again.
func (a *Agent) followGuest(ctx context.Context, guest transport.Dialer, service string, serve func(net.Conn)) {
	for ctx.Err() == nil {
		conn, err := guest.Dial(ctx, service)
		if err != nil {
			a.logf("%s: %v", service, err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		serve(conn)
		stop()
		conn.Close()
	}
}

// timeSync pushes the host clock to the guest periodically and right after the host
// wakes from sleep (seen as wall time jumping ahead of monotonic time).
func (a *Agent) timeSync(ctx context.Context) {
	sync := func(reason string) {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		resp, err := a.control(c, forward.ControlRequest{Op: forward.OpTime, TimeNano: time.Now().UnixNano()})
		if err != nil {
			a.logf("time sync (%s): %v", reason, err)
			return
		}
		if d := time.Duration(resp.DriftNano); d > 100*time.Millisecond {
			a.logf("time sync (%s): guest clock was off by %s; stepped", reason, d)
		}
	}
	a.mu.Lock()
	warm := a.boot != nil && a.boot.Warm
	a.mu.Unlock()
	if !warm { // a resume has just stepped the clock
		sync("start")
	}
	const every = 30 * time.Second
	last := time.Now()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			// Round(0) strips the monotonic reading: the difference is wall-clock time.
			if now.Round(0).Sub(last.Round(0)) > every+5*time.Second {
				sync("host resumed")
			} else {
				sync("periodic")
			}
			last = now
		}
	}
}

// control sends one request to the guest agent's control service.
func (a *Agent) control(ctx context.Context, req forward.ControlRequest) (*forward.ControlResponse, error) {
	_, guest := a.current()
	if guest == nil {
		return nil, errdefs.Errorf(errdefs.ErrState, "the VM is not running")
	}
	conn, err := guest.Dial(ctx, forward.ServiceControl)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if req.TimeNano != 0 {
		// Stamp the time after the stream is up: its handshake runs under emulation.
		req.TimeNano = time.Now().UnixNano()
	}
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return nil, err
	}
	var resp forward.ControlResponse
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		return nil, fmt.Errorf("guest control %s: %w: %w", req.Op, errdefs.ErrUnavailable, err)
	}
	return &resp, nil
}

func (a *Agent) vmConfig(ctx context.Context) (vmm.Config, error) {
	img := a.Spec.Image
	m, err := a.verifyImage(ctx)
	if err != nil {
		return vmm.Config{}, err
	}
	man := m.RolePaths(img.Dir)
	cmdline := m.BootCmdline()
	if extra := os.Getenv("SKIFF_KERNEL_ARGS"); extra != "" {
		cmdline += " " + extra // for debugging boots
	}
	cfg := vmm.Config{
		Name: a.Spec.Name, Dir: a.Dir.Path, RunDir: a.Dir.Run, Arch: a.Spec.Arch(),
		CPUs: a.Spec.CPUs, MemoryMiB: a.Spec.MemoryMiB,
		Kernel: man["kernel"], KernelELF: filepath.Join(img.Dir, images.VMLinuxName), Initrd: man["initrd"], Cmdline: cmdline,
		Disks: []vmm.Disk{
			{Path: man["root"], Serial: "skiff-root", ReadOnly: true},
			{Path: a.Dir.File(machine.FileDataDisk), Serial: "skiff-data", Discard: true},
			{Path: a.Dir.File(machine.FileSeedDisk), Serial: "skiff-seed", ReadOnly: true},
		},
		SerialLog: a.Dir.File(machine.FileSerialLog),
		Network:   a.net,
		MAC:       usernet.GuestMAC,
		Reclaim:   a.Spec.MemoryReclaim,
	}
	if cfg.Group, err = a.groupNIC(); err != nil {
		return vmm.Config{}, err
	}
	// The engine's layer comes right after the seed: Hyper-V finds disks by their place
	// (images/efiboot.sh EFI_LUNS).
	if role := machine.EngineLayerRole(a.Spec, a.Backend); role != "" && m.EngineLayers() {
		layer := man[role]
		if layer == "" {
			return vmm.Config{}, fmt.Errorf("the machine runs %s but its image %s has no layer for it (%s)", a.Spec.Engine, img.Version, role)
		}
		cfg.Disks = append(cfg.Disks, vmm.Disk{Path: layer, Serial: "skiff-engine", ReadOnly: true})
	}
	if a.Spec.Kubernetes {
		layer := man[images.RoleKube]
		if layer == "" {
			return vmm.Config{}, fmt.Errorf("the machine runs Kubernetes but its image %s has no Kubernetes layer (build one with make image-kube)", img.Version)
		}
		cfg.Disks = append(cfg.Disks, vmm.Disk{Path: layer, Serial: "skiff-kube", ReadOnly: true})
	}
	for i, m := range a.Spec.Mounts {
		if typ := a.mountShareType(m); typ != shareOverTransport {
			cfg.Shares = append(cfg.Shares, vmm.Share{Tag: shareTag(i), HostPath: m.HostPath, ReadOnly: m.ReadOnly, Type: typ})
		} else if typ != a.shareType() {
			a.logf("share %s holds Skiff's own data: it is served by Skiff's 9p server, which keeps that data out of the VM's reach, instead of %s", m.HostPath, a.shareType())
		}
	}
	return cfg, nil
}

func (a *Agent) writeSeed() error {
	b, err := a.seedBytes(time.Now())
	if err != nil {
		return err
	}
	return atomicfile.Write(a.Dir.File(machine.FileSeedDisk), b, 0o600)
}

// seedBytes is the seed disk for a boot at now.
func (a *Agent) seedBytes(now time.Time) ([]byte, error) {
	pub, err := os.ReadFile(a.Dir.File(machine.FileSSHKey + ".pub"))
	if err != nil {
		return nil, fmt.Errorf("ssh key: %w", err)
	}
	hostKey, err := os.ReadFile(a.Dir.File(machine.FileHostKey))
	if err != nil {
		return nil, fmt.Errorf("ssh host key: %w", err)
	}
	sd := &seed.Seed{
		Hostname:       a.Spec.Name,
		Engine:         string(a.Spec.Engine),
		Secret:         a.secret,
		AuthorizedKeys: string(pub),
		HostKey:        string(hostKey),
		Network: seed.Network{Address: usernet.GuestIP + "/24", Gateway: usernet.GatewayIP,
			DNS: []string{usernet.GatewayIP}, MTU: usernet.MTU},
		AgentPort:    GuestAgentPort,
		HostPort:     HostAgentPort,
		VsockPort:    VsockPort,
		HostTimeNano: now.UnixNano(),
		TrimInterval: 3600,
		Kubernetes:   a.Spec.Kubernetes,
	}
	if n, ok := a.Backend.(vmm.VsockNetworker); ok {
		sd.Network.VsockPort = n.NetworkVsockPort()
	}
	sd.HostVsockPort = hostStreamPort(a.Backend)
	sd.Group = a.groupSeed()
	for i, m := range a.Spec.Mounts {
		sd.Shares = append(sd.Shares, seedShare(i, m, a.mountShareType(m)))
	}
	return sd.Marshal()
}

// verifyImage checks the machine's installed image against the digests it was installed
// with before the VM uses it (the files whose fingerprint is unchanged are not read
// again), and returns the manifest it checked. An image changed since (by anything: the
// cache is shared by every machine) is installed again from its source when it can be,
// with the changed copy kept aside, and the start fails with the reason when it cannot.
func (a *Agent) verifyImage(ctx context.Context) (*images.Manifest, error) {
	img := a.Spec.Image
	// Missing optional files (the Kubernetes layer of a machine given --kubernetes by
	// set) are fetched.
	opt := images.VerifyOptions{Digest: img.Digest, Source: img.Source, Roles: machine.ImageRoles(a.Spec, a.Backend)}
	v, err := images.Verify(ctx, img.Dir, opt)
	if errors.Is(err, images.ErrImageChanged) && img.Source != "" {
		a.warn("%v; installing it again from %s", err, img.Source)
		home := machine.Home{Root: a.Dir.HomeRoot()}
		if _, ierr := images.Install(ctx, img.Source, home.CacheDir(), images.Options{Roles: opt.Roles}); ierr != nil {
			return nil, fmt.Errorf("%w (installing it again failed: %v)", err, ierr)
		}
		v, err = images.Verify(ctx, img.Dir, opt)
	}
	if err != nil {
		return nil, err
	}
	if len(v.Hashed) > 0 {
		a.logf("image: checked %s against their digests", strings.Join(v.Hashed, ", "))
	}
	return v.Manifest, nil
}

// killStaleVM kills a VM left by a crashed agent on platforms where it could outlive it.
func killStaleVM(d machine.Dir) {
	b, err := os.ReadFile(d.File(machine.FileVMPID))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(string(trimSpace(b)))
	if err == nil && pid > 0 && processIsVM(pid) {
		if p, err := os.FindProcess(pid); err == nil {
			p.Kill()
		}
	}
	os.Remove(d.File(machine.FileVMPID))
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
