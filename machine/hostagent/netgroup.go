package hostagent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/skiff-dev/skiff/forward"
	"github.com/skiff-dev/skiff/forward/usernet/netgroup"
	"github.com/skiff-dev/skiff/images/seed"
	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/vmm"
)

// SwitchCommand is the skiff subcommand that runs a network group's switch, the group's
// name appended. The agent starts it (from its own executable) when it is not running.
const SwitchCommand = "netgroup-switch"

// switchIdle is how long a switch with no member waits before it exits.
const switchIdle = time.Minute

func (a *Agent) home() machine.Home { return machine.Home{Root: a.Dir.HomeRoot()} }

// groupNIC is the machine's NIC on its network group, or nil when it is in none.
func (a *Agent) groupNIC() (*vmm.GroupNIC, error) {
	g, lease := a.Spec.NetworkGroup, a.Spec.GroupLease
	if g == "" {
		return nil, nil
	}
	if lease == nil {
		return nil, fmt.Errorf("network group %s: the machine has no lease there (run: skiff machine set --network-group %s %s)", g, g, a.Spec.Name)
	}
	if a.Backend.Name() != "qemu" {
		return nil, fmt.Errorf("network group %s: the %s backend cannot carry a network group yet (only qemu does)", g, a.Backend.Name())
	}
	m := &netgroup.Member{
		Dial:  func(ctx context.Context) (net.Conn, error) { return dialSwitch(ctx, a.home(), g) },
		Hello: netgroup.Hello{Machine: a.Spec.Name, MAC: lease.MAC, Proof: netgroup.ProofFor(a.secret, g, lease.MAC)},
		Logf:  a.logf,
	}
	return &vmm.GroupNIC{Network: m, MAC: lease.MAC}, nil
}

// groupSeed is the guest's side of the group NIC.
func (a *Agent) groupSeed() *seed.GroupNetwork {
	if a.Spec.NetworkGroup == "" || a.Spec.GroupLease == nil {
		return nil
	}
	bits := netipBits(netgroup.Subnet)
	return &seed.GroupNetwork{MAC: a.Spec.GroupLease.MAC, Address: fmt.Sprintf("%s/%d", a.Spec.GroupLease.Address, bits), MTU: netgroup.MTU}
}

func netipBits(cidr string) int {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return 24
	}
	ones, _ := n.Mask.Size()
	return ones
}

// groupHosts are the names the machine's user-mode DNS answers for its group.
func (a *Agent) groupHosts() map[string]string {
	if a.Spec.NetworkGroup == "" {
		return nil
	}
	return a.home().GroupHosts(a.Spec.NetworkGroup)
}

// groupRetry is how often host ports refused as in use are tried again while any is.
const groupRetry = 10 * time.Second

// refreshGroupHosts keeps the group's names and its refused host ports current until ctx
// ends. It wakes when a machine's folder changes (a machine made or removed, a spec or
// lease saved, an agent or VM started or gone), and on a timer only while some host port
// is refused: an idle member sleeps.
func (a *Agent) refreshGroupHosts(ctx context.Context) {
	if a.Spec.NetworkGroup == "" {
		return
	}
	changed, err := watchMachines(ctx, a.home().MachinesDir(), a.logf)
	if err != nil {
		a.logf("network group names: watch the machines: %v; looking every %v instead", err, groupRetry)
		t := time.NewTicker(groupRetry)
		defer t.Stop()
		changed = t.C
	}
	retry := time.NewTimer(groupRetry)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
			if err := a.net.SetGroupHosts(a.groupHosts()); err != nil {
				a.logf("network group names: %v", err)
			}
		case <-retry.C:
		}
		if a.retryGroupPorts(ctx) {
			retry.Reset(groupRetry)
		}
	}
}

// watchMachines reports, coalesced, each change of what a machine's folder says about
// it: its spec, its agent and VM pid files, the folder itself.
func watchMachines(ctx context.Context, root string, logf func(string, ...any)) (<-chan time.Time, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		w.Close()
		return nil, err
	}
	if err := w.Add(root); err != nil {
		w.Close()
		return nil, err
	}
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		if e.IsDir() {
			w.Add(filepath.Join(root, e.Name()))
		}
	}
	out := make(chan time.Time, 1)
	go func() {
		defer w.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				logf("network group names: watch the machines: %v", err)
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if filepath.Dir(ev.Name) == root {
					if ev.Has(fsnotify.Create) {
						w.Add(ev.Name) // a new machine's folder; a file there fails harmlessly
					}
				} else if !machineStateFiles[filepath.Base(ev.Name)] {
					continue // its logs and disks: nothing the group's names depend on
				}
				select {
				case out <- time.Now():
				default:
				}
			}
		}
	}()
	return out, nil
}

// machineStateFiles are the files of a machine's folder whose changes matter to the other
// members of its group.
var machineStateFiles = map[string]bool{machine.FileConfig: true, machine.FileAgentPID: true, machine.FileVMPID: true}

// dialSwitch connects to the group's switch, starting one when none answers.
func dialSwitch(ctx context.Context, home machine.Home, group string) (net.Conn, error) {
	sock := home.GroupSocket(group)
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", sock)
	if err == nil {
		return c, nil
	}
	if err := startSwitch(home, group); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := d.DialContext(ctx, "unix", sock)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return c, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startSwitch runs `skiff netgroup-switch GROUP` detached: the switch outlives this agent,
// so that the group keeps its network while this machine is stopped.
func startSwitch(home machine.Home, group string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("network group %s: start the switch: %w", group, err)
	}
	dir := filepath.Dir(home.GroupSocket(group))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(dir, "switch.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(exe, SwitchCommand, group)
	cmd.Env = append(os.Environ(), "SKIFF_HOME="+home.Root)
	cmd.Stdout, cmd.Stderr = logf, logf
	machine.DetachCommand(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("network group %s: start the switch: %w", group, err)
	}
	go cmd.Wait() // reaped if it ends while this agent runs
	return nil
}

// RunSwitch runs a network group's switch until ctx ends or the group has had no member
// connected for a minute. When another switch of the group runs already, it returns nil.
func RunSwitch(ctx context.Context, home machine.Home, group string, logf func(string, ...any)) error {
	if err := machine.ValidateName(group); err != nil {
		return fmt.Errorf("network group: %w", err)
	}
	sock := home.GroupSocket(group)
	if err := os.MkdirAll(filepath.Dir(sock), 0o700); err != nil {
		return err
	}
	// A switch that is exiting still holds the lock for a moment.
	lock, err := machine.TryLockFor(sock+".lock", 3*time.Second)
	if errors.Is(err, machine.ErrLocked) {
		logf("another switch serves network group %s", group)
		return nil
	}
	if err != nil {
		return err
	}
	defer lock.Unlock()
	os.Remove(sock)
	l, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("network group %s: %w", group, err)
	}
	defer os.Remove(sock)
	if err := os.Chmod(sock, 0o600); err != nil {
		l.Close()
		return err
	}
	logf("network group %s: switch on %s", group, sock)
	sw := &netgroup.Switch{Admit: home.AdmitGroupMember(group), IdleExit: switchIdle, Logf: logf}
	return sw.Serve(ctx, l)
}

// Docker Swarm's own ports on a network group: VXLAN (the overlay's data path) and the
// nodes' gossip. They belong to the group's network; mirrored on the host, a local program
// could inject frames into the overlay.
var swarmPorts = map[forward.Listener]bool{
	{Proto: "udp", Port: 4789}: true,
	{Proto: "udp", Port: 7946}: true,
	{Proto: "tcp", Port: 7946}: true,
	{Proto: "tcp", Port: 2377}: true,
}

// groupListeners adapts the guest's listeners on a machine of a network group before they
// become host ports. Swarm's own ports are left out. A TCP wildcard held on [::] is dialled
// at 127.0.0.1: the routing mesh holds each published service port there as a placeholder
// that never accepts, and reaches the service only through its IPv4 NAT; a dual-stack
// socket (Linux's default) takes IPv4 as well.
func (a *Agent) groupListeners(ls []forward.Listener) []forward.Listener {
	if a.Spec.NetworkGroup == "" {
		return ls
	}
	out := make([]forward.Listener, 0, len(ls))
	defer func() {
		// Under the lock a retry holds while it applies the previous list, so that the
		// list returned here is the last one the ports get.
		a.netGroup.mu.Lock()
		a.netGroup.last, a.netGroup.seen = out, true
		a.netGroup.mu.Unlock()
	}()
	for _, l := range ls {
		if swarmPorts[forward.Listener{Proto: l.Proto, Port: l.Port}] {
			continue
		}
		if ip := net.ParseIP(l.IP); l.Proto == "tcp" && ip != nil && ip.IsUnspecified() && ip.To4() == nil {
			l.IP = net.IPv4zero.String()
		}
		out = append(out, l)
	}
	return out
}

// groupPorts is what retryGroupPorts applies again.
type groupPorts struct {
	mu   sync.Mutex
	last []forward.Listener
	seen bool
}

// retryGroupPorts gives the ports the guest's listeners again, so that host ports refused
// as in use are tried anew: every member holds a swarm's published ports, the first to bind
// one on the host serves it, and when that machine stops another takes it over. (The guest
// sends its listeners only when they change, which the other machine's stop does not.) It
// reports whether some port is still refused.
func (a *Agent) retryGroupPorts(ctx context.Context) bool {
	pm := a.portManager()
	refused := func() bool {
		return slices.ContainsFunc(pm.Status(), func(f forward.Forward) bool { return f.Error != "" })
	}
	if pm == nil || !refused() {
		return false // nothing refused: nothing to try again, and no event for nothing
	}
	a.netGroup.mu.Lock()
	defer a.netGroup.mu.Unlock()
	if a.netGroup.seen {
		pm.Update(ctx, a.netGroup.last)
	}
	return refused()
}
