// Package wsl2 is the Windows backend on WSL 2: the image's root filesystem is imported as
// a WSL distro of its own and the engine and agent run inside it. The OS owns the WSL VM;
// the host agent owns the distro's init process, the user-mode network and the forwarders.
//
// Contract with the guest image (see vmm/PLATFORMS.md):
//   - the image ships wsl-rootfs.tar next to its kernel; it is imported with
//     wsl.exe --import skiff-NAME DIR TAR --version 2
//   - the host starts wsl.exe -d skiff-NAME -u root -- /usr/sbin/skiff-agent boot-wsl
//     --seed /mnt/c/.../seed.img --network user|wsl
//     and that process runs in the foreground for the machine's whole life; its output is
//     the machine's serial log, and its exit is the machine stopping
//   - with --network user the agent connects to host vsock port NetworkPort and carries
//     Ethernet frames with a 4-byte big-endian length prefix (vmm.Network.ServeGuestStream, after the transport handshake)
//   - the agent listens on vsock port TransportPort for the host's streams (DialGuest)
package wsl2

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/skiff-dev/skiff/images"
	"github.com/skiff-dev/skiff/vmm"
	"github.com/skiff-dev/skiff/vmm/winexec"
)

// NetworkMode selects how the distro reaches the network.
type NetworkMode string

const (
	// NetworkUser is the embedded user-mode network (gvisor-tap-vsock) over hvsock: host
	// VPNs and proxies would apply to the guest as to any Windows program. Not supported
	// yet: WSL 2's distros share one network namespace (microsoft/WSL#4304), so the
	// engine's device and default route would be every distro's; the engine needs a
	// namespace of its own first.
	NetworkUser NetworkMode = "user"
	// NetworkWSL leaves the distro on WSL's own NAT (or mirrored) network; the default.
	// The host still reaches the engine and published ports over hvsock.
	NetworkWSL NetworkMode = "wsl"
)

// Defaults for Options.
const (
	DefaultTransportPort uint32 = 1024
	DefaultNetworkPort   uint32 = 1025
	// DefaultHostPort is where the guest opens its streams to the host (readiness, shares)
	// with --network wsl, which cannot reach the user-mode network's gateway.
	DefaultHostPort uint32 = 1026
	RootfsName             = "wsl-rootfs.tar"
	AgentPath              = "/usr/sbin/skiff-agent"
	// SeedSerial is the disk whose file the agent reads its seed from.
	SeedSerial = "skiff-seed"
	// InstallCommand is what users run elevated to register the hvsock services.
	InstallCommand = "skiff system install"
	markerFile     = "wsl-distro"
)

// Options tune the backend.
type Options struct {
	Network       NetworkMode // default NetworkUser
	TransportPort uint32      // guest vsock port of the agent; default DefaultTransportPort
	NetworkPort   uint32      // host vsock port for the network; default DefaultNetworkPort
	HostPort      uint32      // host vsock port for the guest's streams; default DefaultHostPort
	// Rootfs returns the tarball to import; default RootfsName in the kernel's directory.
	Rootfs func(cfg vmm.Config) string
}

// Hvsock opens hvsock connections; the real one is go-winio on Windows.
type Hvsock interface {
	// VMIDs lists candidate IDs of running utility VMs (the WSL VM among them).
	VMIDs() ([]string, error)
	Dial(ctx context.Context, vmID string, port uint32) (net.Conn, error)
	// Listen accepts connections to port from any VM.
	Listen(port uint32) (net.Listener, error)
}

// Backend runs machines as WSL 2 distros.
type Backend struct {
	Options  Options
	Run      winexec.Runner
	Spawn    winexec.Spawner
	Registry winexec.Registry
	Hvsock   Hvsock
}

// New returns the backend driving the real OS.
func New(o Options) *Backend {
	return &Backend{Options: o, Run: winexec.Exec{}, Spawn: winexec.Exec{}, Registry: winexec.WindowsRegistry{}, Hvsock: newHvsock()}
}

// Name implements vmm.Backend.
func (b *Backend) Name() string { return "wsl2" }

// ShareType implements vmm.ShareKind: WSL already mounts Windows drives under /mnt/<drive>
// (drvfs), so a share is a bind mount of GuestPath(host path).
func (b *Backend) ShareType() string { return "drvfs" }

func (b *Backend) network() NetworkMode {
	if b.Options.Network == "" {
		return NetworkWSL
	}
	return b.Options.Network
}

func (b *Backend) ports() (transport, network uint32) {
	transport, network = b.Options.TransportPort, b.Options.NetworkPort
	if transport == 0 {
		transport = DefaultTransportPort
	}
	if network == 0 {
		network = DefaultNetworkPort
	}
	return transport, network
}

// Services are the hvsock ports that need registry entries.
func (b *Backend) Services() []winexec.Service {
	t, n := b.ports()
	s := []winexec.Service{{Port: t, Name: "Skiff transport"}}
	if b.network() == NetworkUser {
		s = append(s, winexec.Service{Port: n, Name: "Skiff network"})
	} else {
		s = append(s, winexec.Service{Port: b.HostStreamPort(), Name: "Skiff host services"})
	}
	return s
}

// HostStreamPort implements vmm.HostStreamer: on WSL's own network the guest cannot reach
// the user-mode network's gateway, so it opens its streams to the host on hvsock.
func (b *Backend) HostStreamPort() uint32 {
	if b.network() == NetworkUser {
		return 0
	}
	if b.Options.HostPort != 0 {
		return b.Options.HostPort
	}
	return DefaultHostPort
}

// ListenGuest implements vmm.HostListener. Any WSL distro can connect (they share one
// VM); the transport's handshake admits only this machine's guest.
func (m *machine) ListenGuest(port uint32) (net.Listener, error) {
	return m.b.Hvsock.Listen(port)
}

// Install registers the hvsock services. It needs administrator rights, once per host.
func (b *Backend) Install(ctx context.Context) error {
	return winexec.RegisterServices(ctx, b.Registry, b.Services(), InstallCommand)
}

// DistroName is the WSL distro of a machine. The prefix keeps it apart from user distros
// (Ubuntu, Debian, docker-desktop), and the marker file proves which ones Skiff made.
func DistroName(machine string) string { return "skiff-" + machine }

func (b *Backend) rootfs(cfg vmm.Config) string {
	if b.Options.Rootfs != nil {
		return b.Options.Rootfs(cfg)
	}
	return filepath.Join(filepath.Dir(cfg.Kernel), RootfsName)
}

func installDir(cfg vmm.Config) string { return filepath.Join(cfg.Dir, "wsl") }

// Check implements vmm.Backend.
func (b *Backend) Check(ctx context.Context) error {
	stdout, stderr, err := b.Run.Run(ctx, "wsl.exe", statusArgs()...)
	out := winexec.Output(stdout, stderr)
	if err != nil {
		return classify(err, out, "")
	}
	return checkStatus(out)
}

// distros lists registered distros.
func (b *Backend) distros(ctx context.Context) ([]string, error) {
	stdout, stderr, err := b.Run.Run(ctx, "wsl.exe", listArgs()...)
	out := winexec.Output(stdout, stderr)
	if err != nil {
		if noDistros(out) {
			return nil, nil
		}
		return nil, classify(err, out, "")
	}
	return parseList(winexec.Text(stdout)), nil
}

func (b *Backend) registered(ctx context.Context, name string) (bool, error) {
	ds, err := b.distros(ctx)
	if err != nil {
		return false, err
	}
	for _, d := range ds {
		if strings.EqualFold(d, name) {
			return true, nil
		}
	}
	return false, nil
}

func ownsDistro(cfg vmm.Config, name string) bool {
	b, err := os.ReadFile(filepath.Join(cfg.Dir, markerFile))
	return err == nil && strings.TrimSpace(string(b)) == name
}

// RootfsWhat says what RootfsName is, for messages.
const RootfsWhat = "WSL's root filesystem"

// ImageRoles implements vmm.ImageChecker.
func (b *Backend) ImageRoles() []string { return []string{images.RoleWSLRootfs} }

// CheckImageDir implements vmm.ImageChecker: the distro is imported from the image's root
// filesystem tarball.
func (b *Backend) CheckImageDir(dir string) error {
	if b.Options.Rootfs != nil {
		return nil
	}
	return vmm.CheckImageFile(filepath.Join(dir, RootfsName), RootfsWhat)
}

// Prepare implements vmm.Preparer: import the distro once.
func (b *Backend) Prepare(ctx context.Context, cfg vmm.Config) error {
	name := DistroName(cfg.Name)
	ok, err := b.registered(ctx, name)
	if err != nil {
		return err
	}
	if ok {
		if ownsDistro(cfg, name) {
			return nil
		}
		return distroExistsError(name)
	}
	tar := b.rootfs(cfg)
	if _, err := os.Stat(tar); err != nil {
		return fmt.Errorf("wsl2: guest root filesystem missing: %w", err)
	}
	dir := installDir(cfg)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("wsl2: %w", err)
	}
	stdout, stderr, err := b.Run.Run(ctx, "wsl.exe", importArgs(name, dir, tar)...)
	if err != nil {
		return classify(err, winexec.Output(stdout, stderr), name)
	}
	if err := os.WriteFile(filepath.Join(cfg.Dir, markerFile), []byte(name+"\n"), 0o600); err != nil {
		return fmt.Errorf("wsl2: %w", err)
	}
	return nil
}

// Remove implements vmm.Remover: unregister the distro (deleting its virtual disk).
func (b *Backend) Remove(ctx context.Context, cfg vmm.Config) error {
	name := DistroName(cfg.Name)
	ok, err := b.registered(ctx, name)
	if err != nil {
		return err
	}
	if ok {
		if !ownsDistro(cfg, name) {
			return fmt.Errorf("wsl2: distro %s %w (remove it yourself with `wsl --unregister %s` if it is unused)", name, vmm.ErrNotOwned, name)
		}
		stdout, stderr, err := b.Run.Run(ctx, "wsl.exe", unregisterArgs(name)...)
		if err != nil {
			return classify(err, winexec.Output(stdout, stderr), name)
		}
	}
	os.Remove(filepath.Join(cfg.Dir, markerFile))
	return os.RemoveAll(installDir(cfg))
}

// Start implements vmm.Backend.
func (b *Backend) Start(ctx context.Context, cfg vmm.Config) (vmm.VM, error) {
	// WSL boots Microsoft's kernel, but a missing image file means a broken image: say so
	// before touching WSL.
	if err := vmm.CheckImage(cfg); err != nil {
		return nil, fmt.Errorf("wsl2: %w", err)
	}
	if b.network() == NetworkUser {
		return nil, fmt.Errorf("wsl2: --network user: %w: WSL 2's distros share one network namespace, so the engine's network device would be all of theirs (use --network wsl)", vmm.ErrNotSupported)
	}
	if err := b.Prepare(ctx, cfg); err != nil {
		return nil, err
	}
	if err := winexec.RequireServices(b.Registry, b.Services(), InstallCommand); err != nil {
		return nil, fmt.Errorf("wsl2: %w", err)
	}
	args, err := b.bootArgs(cfg)
	if err != nil {
		return nil, err
	}
	log, err := os.OpenFile(cfg.SerialLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("wsl2: serial log: %w", err)
	}
	m := &machine{b: b, name: DistroName(cfg.Name), log: log}
	transport, netPort := b.ports()
	m.transportPort = transport
	if b.network() == NetworkUser {
		l, err := b.Hvsock.Listen(netPort)
		if err != nil {
			log.Close()
			return nil, fmt.Errorf("wsl2: listen for the guest network on hvsock port %d: %w", netPort, err)
		}
		m.netListener = l
		go vmm.ServeGuestStreams(l, cfg.Network)
	}
	proc, err := b.Spawn.Spawn(ctx, winexec.SpawnOptions{Name: "wsl.exe", Args: args, Output: log})
	if err != nil {
		m.cleanup()
		if winexec.IsNotFound(err) {
			return nil, fmt.Errorf("wsl2: %w", ErrNotInstalled)
		}
		return nil, fmt.Errorf("wsl2: start %s: %w", m.name, err)
	}
	m.proc = vmm.WatchProcess(proc, func(err error) error {
		m.cleanup()
		if err != nil {
			return fmt.Errorf("wsl2: %s stopped: %w (see the serial log)", m.name, err)
		}
		return nil
	})
	return m, nil
}

func (b *Backend) bootArgs(cfg vmm.Config) ([]string, error) {
	seedPath := ""
	for _, d := range cfg.Disks {
		if d.Serial == SeedSerial {
			p, err := GuestPath(d.Path)
			if err != nil {
				return nil, fmt.Errorf("wsl2: seed: %w", err)
			}
			seedPath = p
		}
	}
	return bootArgs(DistroName(cfg.Name), AgentCommand(seedPath, b.network())...), nil
}

// machine is a running distro: the wsl.exe process running the agent in the foreground.
type machine struct {
	b             *Backend
	name          string
	log           *os.File
	proc          *vmm.Proc // wsl.exe running the agent: its exit is the machine's
	netListener   net.Listener
	transportPort uint32

	vmMu sync.Mutex
	vmID string // the WSL VM that answered last
}

// cleanup releases what the machine holds once wsl.exe has gone, or never started.
func (m *machine) cleanup() {
	if m.netListener != nil {
		m.netListener.Close()
	}
	m.log.Close()
}

// Wait implements vmm.VM.
func (m *machine) Wait(ctx context.Context) error { return m.proc.Wait(ctx) }

// Kill implements vmm.VM: terminate the distro, then the wsl.exe process if it lingers.
func (m *machine) Kill(ctx context.Context) error {
	if m.proc.Exited() {
		return nil
	}
	stdout, stderr, err := m.b.Run.Run(ctx, "wsl.exe", terminateArgs(m.name)...)
	kerr := m.proc.Kill(ctx)
	if err != nil {
		return classify(err, winexec.Output(stdout, stderr), m.name)
	}
	return kerr
}

// DialGuest implements vmm.GuestDialer over hvsock. All WSL distros share one utility VM
// whose ID changes at each WSL start; the candidate that accepts is remembered.
func (m *machine) DialGuest(ctx context.Context, port uint32) (net.Conn, error) {
	m.vmMu.Lock()
	known := m.vmID
	m.vmMu.Unlock()
	if known != "" {
		if c, err := m.b.Hvsock.Dial(ctx, known, port); err == nil {
			return c, nil
		}
	}
	ids, err := m.b.Hvsock.VMIDs()
	if err != nil {
		return nil, fmt.Errorf("wsl2: find the WSL VM: %w", err)
	}
	var errs []error
	for _, id := range ids {
		c, err := m.b.Hvsock.Dial(ctx, id, port)
		if err == nil {
			m.vmMu.Lock()
			m.vmID = id
			m.vmMu.Unlock()
			return c, nil
		}
		errs = append(errs, err)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("wsl2: no running WSL VM found; is %s running?", m.name)
	}
	return nil, fmt.Errorf("wsl2: hvsock port %d: %w", port, errors.Join(errs...))
}

var (
	_ vmm.Backend      = (*Backend)(nil)
	_ vmm.Preparer     = (*Backend)(nil)
	_ vmm.Remover      = (*Backend)(nil)
	_ vmm.ImageChecker = (*Backend)(nil)
	_ vmm.ShareKind    = (*Backend)(nil)
	_ vmm.GuestDialer  = (*machine)(nil)
	_ vmm.HostStreamer = (*Backend)(nil)
	_ vmm.HostListener = (*machine)(nil)
)
