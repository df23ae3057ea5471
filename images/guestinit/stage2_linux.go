package guestinit

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-dev/skiff/forward/transport"
	"github.com/skiff-dev/skiff/images/seed"
)

// DataMount is where the data disk lives; engine state is bound in from it.
const DataMount = "/var/lib/skiff"

// EngineSocket is the engine's API socket in the guest for either engine: podman's
// Docker-compatible service is linked here so forwarders need not care which one runs.
const EngineSocket = "/run/docker.sock"

// System is the booted guest: what stage 2 set up and the processes it supervises.
type System struct {
	Seed   *seed.Seed
	Reaper *Reaper
	Log    func(string, ...any)
	// Host opens authenticated streams to host services.
	Host transport.Dialer

	mu         sync.Mutex
	wsl        bool // under WSL's init (boot-wsl)
	engine     *exec.Cmd
	containerd *exec.Cmd
	sshd       *exec.Cmd
	kubeOn     bool // the seed asked for Kubernetes and its layer is mounted
	pid1       bool
	bootEnded  bool
	stopping   bool     // Shutdown began: daemons exiting now were asked to
	stopReason string   // why the guest stops itself, repeated last on the console
	warnings   []string // for the host, with the readiness
	// recording is the boot's end writing for the next boot (recordRuntimeProbes), which a
	// stop right after a start should not cut short.
	recording sync.WaitGroup
	// suspendedShares were unmounted by Quiesce, for Resume to mount again.
	suspendedShares []seed.Share
	// vsockNetwork is Options.VsockNetwork.
	vsockNetwork NetworkHelper
}

// NetworkHelper gives a VM without a NIC its network: it makes a device, calls configure
// with its name, and carries its frames to the host over vsock (forward/guest.RunNetHelper).
type NetworkHelper func(sd *seed.Seed, configure func(iface string) error) error

// Options chooses what Boot does beyond the basics.
type Options struct {
	// PID1 mounts the kernel filesystems; false under systemd, which has done it.
	PID1 bool
	// WSL boots in a WSL distro under WSL's init (wsl_linux.go); nil in a VM.
	WSL *WSLOptions
	// VsockNetwork runs when the seed gives the network a vsock port (Hyper-V: no NIC).
	VsockNetwork NetworkHelper
}

// Boot prepares the system and starts sshd and the engine. The engine start is not waited
// for: the caller polls EngineReady so that readiness is signalled the moment it answers.
func Boot(ctx context.Context, opt Options, logf func(string, ...any)) (*System, error) {
	s := &System{Reaper: NewReaper(), Log: logf, pid1: opt.PID1, wsl: opt.WSL != nil, vsockNetwork: opt.VsockNetwork}
	// Every forwarded stream costs the agent two descriptors, and the engine inherits the
	// limit; the kernel's default of 1024 for init runs out under load.
	lim := unix.Rlimit{Cur: 1 << 20, Max: 1 << 20}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		logf("raise open file limit: %v", err)
	}
	// The kernel starts PID 1 with an empty environment.
	os.Setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	if opt.PID1 {
		if err := mountKernelFS(kernelFS); err != nil {
			return nil, err
		}
		devLinks()
	}
	if opt.WSL != nil {
		if err := prepareWSL(); err != nil {
			return nil, err
		}
	}
	// Where stage 1 did not run (no initrd), before anything else starts.
	pinKeys()
	Trace("stage 2")
	// The data disk needs nothing from the seed and the engine needs nothing more than the
	// data disk (dockerd's start does not use the network): the mount goes first, and the
	// engine starts the moment it is done while the network is still being configured.
	dataDone := make(chan error, 1)
	go func() {
		// ext4 asks the crypto API for crc32c: stage 1 loads it, or the mount would wait
		// for the kernel to run modprobe for it.
		for _, m := range []string{"ext4.ko", "crc32c_intel.ko", "crc32c_generic.ko"} {
			waitStage1Module(m)
		}
		setup := s.setupData
		if opt.WSL != nil {
			setup = s.setupDataDir
		}
		err := setup()
		Trace("data disk ready")
		dataDone <- err
	}()
	sd, err := s.readSeed(opt)
	if err != nil {
		return nil, err
	}
	s.Seed = sd
	Trace("seed read")
	s.Host = &transport.Client{Secret: sd.Secret, Raw: hostDialer(sd)}
	// The emulated RTC already gave the kernel the host's time. The seed was written
	// before the VM started, so a clock behind it is certainly wrong (a VM without an
	// RTC); anything else waits for the host's exact push once the agent is up.
	if seedTime := time.Unix(0, sd.HostTimeNano); sd.HostTimeNano > 0 && time.Now().Before(seedTime) {
		SetClock(seedTime, logf)
	}
	// WSL's distros share one UTS namespace (microsoft/WSL#7108): the name stays Windows'.
	if opt.WSL == nil {
		unix.Sethostname([]byte(sd.Hostname))
		os.WriteFile("/etc/hostname", []byte(sd.Hostname+"\n"), 0o644)
	}

	// WSL's kernel is shared with the user's other distros, which would get the filter too.
	if opt.WSL == nil {
		useModprobeFilter(logf)
	}
	// The engine's first iptables and bridge calls would load these one by one, each a
	// slow exec under emulation; the agent loads them all at once in the background.
	// virtio_balloon: free page reporting, so that the host drops pages the guest frees
	// (an idle machine gives memory back, a suspended one saves only the pages in use).
	// Stage 1 loads it first where it ran; here it is for a boot without an initrd.
	if opt.WSL == nil || wslModules() {
		go func() {
			loadModules(append(engineModules, "virtio_balloon")...)
			if err := SettleConntrackID(); err != nil {
				logf("%v", err)
			} else {
				Trace("conntrack IDs seeded")
			}
		}()
	}

	netDone := make(chan error, 1)
	go func() {
		// Stage 1 may still be loading the NIC's driver.
		waitStage1Module("virtio_net.ko")
		waitStage1Module("hv_netvsc.ko")
		var err error
		if opt.WSL != nil {
			err = s.configureWSLNetwork(opt.WSL)
		} else {
			err = s.setupNetwork()
		}
		Trace("network ready")
		netDone <- err
	}()
	if err := <-dataDone; err != nil {
		return nil, err
	}
	kube := sd.Kubernetes && opt.WSL == nil && sd.Engine != "podman"
	if sd.Kubernetes && !kube {
		logf("kubernetes: not supported with engine %s or under WSL yet; not starting it", sd.Engine)
	}
	if kube {
		if err := s.mountKubeLayer(); err != nil {
			logf("kubernetes: %v", err)
			kube = false
		}
	}
	s.kubeOn = kube
	if err := s.startEngine(); err != nil {
		return nil, err
	}
	if err := <-netDone; err != nil {
		return nil, err
	}
	if kube {
		go func() {
			if err := s.startKube(context.Background()); err != nil {
				logf("kubernetes: %v", err)
			}
		}()
	}
	go s.mountShares()
	if err := s.startSSHD(); err != nil {
		logf("sshd: %v", err)
	}
	// Should the engine never answer, what waits for it need not wait forever.
	time.AfterFunc(time.Minute, s.EndBoot)
	// What the agent goes on to use (vsock) is among the rest of stage 1's modules.
	waitStage1Modules()
	return s, nil
}

type kernelMount struct {
	src, dst, fs string
	flags        uintptr
	data         string
}

// cgroupFS is also mounted for a moment in stage 1, to pin the kernel's switches.
var cgroupFS = kernelMount{"cgroup2", "/sys/fs/cgroup", "cgroup2", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "nsdelegate"}

var kernelFS = []kernelMount{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666"},
	{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	{"mqueue", "/dev/mqueue", "mqueue", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	cgroupFS,
	{"securityfs", "/sys/kernel/security", "securityfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
}

// lateKernelFS are mounted once the engine answers (EndBoot): mounting bpffs makes the
// kernel load bpf_preload, whose BPF programs it verifies, ~0.15 s of emulated CPU that
// the engine's start was short of. Nothing the boot starts needs them.
var lateKernelFS = []kernelMount{
	{"bpf", "/sys/fs/bpf", "bpf", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
}

func mountKernelFS(mounts []kernelMount) error {
	for _, m := range mounts {
		os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.fs, m.flags, m.data); err != nil && err != unix.EBUSY {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	return nil
}

// devLinks makes what udev or systemd would have made in /dev and the tmpfs roots.
func devLinks() {
	os.Symlink("/proc/self/fd", "/dev/fd")
	os.Symlink("/proc/self/fd/0", "/dev/stdin")
	os.Symlink("/proc/self/fd/1", "/dev/stdout")
	os.Symlink("/proc/self/fd/2", "/dev/stderr")
	os.Symlink("pts/ptmx", "/dev/ptmx")
	os.MkdirAll("/run/lock", 0o1777)
	os.Chmod("/tmp", 0o1777)
}

func (s *System) run(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	ws, err := s.Reaper.Run(cmd)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if !ws.Exited() || ws.ExitStatus() != 0 {
		return fmt.Errorf("%s %s: exit %d: %s", name, strings.Join(args, " "), ws.ExitStatus(), strings.TrimSpace(out.String()))
	}
	return nil
}

// readSeed reads the seed from its disk, or from its file under WSL.
func (s *System) readSeed(opt Options) (*seed.Seed, error) {
	if opt.WSL != nil {
		return s.readSeedFile(opt.WSL.Seed)
	}
	dev, err := WaitDisk(SerialSeed, 10*time.Second)
	if err != nil {
		return nil, err
	}
	return seed.ReadFile(dev)
}

// hostDialer reaches the host's services: on host vsock where the seed says the guest
// cannot reach them through the user-mode network (WSL on its own network), and
// otherwise at the network's gateway.
func hostDialer(sd *seed.Seed) transport.RawDialer {
	if sd.HostVsockPort != 0 {
		return transport.VsockDialer(transport.HostCID, sd.HostVsockPort)
	}
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", net.JoinHostPort(sd.Network.Gateway, strconv.Itoa(sd.HostPort)))
	}
}

func (s *System) setupNetwork() error {
	if s.Seed.Network.VsockPort != 0 {
		// No NIC: the network is a TAP device whose frames go to the host over vsock.
		if s.vsockNetwork == nil {
			return errors.New("the seed puts the network on vsock, which this agent cannot carry")
		}
		loadModules("tun")
		return s.vsockNetwork(s.Seed, s.configureLink)
	}
	// Stage 1 loaded the NIC drivers; modprobe is an exec worth sparing unless they failed.
	iface, err := WaitInterface(time.Second)
	if err != nil {
		loadModules("virtio_net", "hv_netvsc")
		if iface, err = WaitInterface(5 * time.Second); err != nil {
			return err
		}
	}
	if g := s.Seed.Group; g != nil && interfaceMAC(iface) == strings.ToLower(g.MAC) {
		// The group's NIC came up first; the main one is the other.
		if iface, err = waitInterfaceNot(g.MAC, 5*time.Second); err != nil {
			return err
		}
	}
	if err := s.configureLink(iface); err != nil {
		return err
	}
	return s.setupGroupNetwork()
}

// setupGroupNetwork gives the NIC on the machine's network group its address: a link to
// the other members only, with no route beyond its subnet.
func (s *System) setupGroupNetwork() error {
	g := s.Seed.Group
	if g == nil {
		return nil
	}
	addr, err := netip.ParsePrefix(g.Address)
	if err != nil {
		return fmt.Errorf("seed: network group address: %w", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ents, _ := os.ReadDir("/sys/class/net")
		for _, e := range ents {
			if interfaceMAC(e.Name()) == strings.ToLower(g.MAC) {
				return ConfigureLink(e.Name(), g.MTU, addr, netip.Addr{})
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the network group's NIC (%s) did not appear", g.MAC)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// interfaceMAC is an interface's MAC as the kernel writes it (lower case), or "".
func interfaceMAC(name string) string {
	b, _ := os.ReadFile("/sys/class/net/" + name + "/address")
	return strings.TrimSpace(string(b))
}

// waitInterfaceNot is the first interface other than lo whose MAC is not mac.
func waitInterfaceNot(mac string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		ents, _ := os.ReadDir("/sys/class/net")
		for _, e := range ents {
			if e.Name() != "lo" && interfaceMAC(e.Name()) != strings.ToLower(mac) {
				return e.Name(), nil
			}
		}
		if time.Now().After(deadline) {
			return "", errors.New("no network interface appeared besides the network group's")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// configureLink gives iface the seed's network (ConfigureSeedNetwork).
func (s *System) configureLink(iface string) error { return ConfigureSeedNetwork(iface, s.Seed) }

// ConfigureSeedNetwork gives iface the seed's address, routes and MTU, and writes the name
// files.
func ConfigureSeedNetwork(iface string, sd *seed.Seed) error {
	n := sd.Network
	addr, err := netip.ParsePrefix(n.Address)
	if err != nil {
		return fmt.Errorf("seed: network address: %w", err)
	}
	gw, err := netip.ParseAddr(n.Gateway)
	if err != nil {
		return fmt.Errorf("seed: network gateway: %w", err)
	}
	if err := ConfigureLink(iface, n.MTU, addr, gw); err != nil {
		return err
	}
	var rc strings.Builder
	for _, d := range n.DNS {
		fmt.Fprintf(&rc, "nameserver %s\n", d)
	}
	// Replaced, not written through: under WSL it is a link to a file every distro shares.
	os.Remove("/etc/resolv.conf")
	os.WriteFile("/etc/resolv.conf", []byte(rc.String()), 0o644)
	hosts := fmt.Sprintf("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n%s %s\n", addr.Addr(), sd.Hostname)
	return os.WriteFile("/etc/hosts", []byte(hosts), 0o644)
}

// WaitInterface returns the first network interface other than lo, waiting for one.
func WaitInterface(timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		ents, _ := os.ReadDir("/sys/class/net")
		for _, e := range ents {
			if e.Name() != "lo" {
				return e.Name(), nil
			}
		}
		if time.Now().After(deadline) {
			return "", errors.New("no network interface appeared")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// engineModules are the kernel modules dockerd's start uses: overlay2 and the default
// bridge network with its legacy iptables rules, the conntrack netlink it modprobes and
// the xfrm netlink socket it opens (each a modprobe run on its critical path otherwise).
// What only some setups use (nf_tables for iptables-nft or podman's netavark, ip6tables
// for IPv6 networks, tun) the kernel loads on first use; loading it here cost every boot
// CPU that dockerd's start was short of.
var engineModules = []string{"overlay", "bridge", "br_netfilter", "veth", "nf_nat", "nf_conntrack", "xt_conntrack",
	"xt_MASQUERADE", "xt_addrtype", "xt_nat", "xt_tcpudp", "ip_tables", "iptable_nat", "iptable_filter",
	"nf_conntrack_netlink", "xfrm_user"}

// ModprobeFilter is the image's helper for the kernel's module requests: it answers the
// ones no module can satisfy without running modprobe (images/helpers/modprobe-filter.c).
const ModprobeFilter = "/usr/libexec/skiff/modprobe-filter"

// useModprobeFilter makes the kernel ask ModprobeFilter for modules, if the image has it:
// a helper path that does not exist would fail every module request.
func useModprobeFilter(logf func(string, ...any)) {
	if _, err := os.Stat(ModprobeFilter); err != nil {
		logf("kernel module requests go to modprobe unfiltered: %v", err)
		return
	}
	if err := os.WriteFile("/proc/sys/kernel/modprobe", []byte(ModprobeFilter), 0o644); err != nil {
		logf("kernel module requests go to modprobe unfiltered: %v", err)
	}
}

// setupData mounts the data disk, formatting it on first boot and growing the filesystem
// when the host grew the disk.
func (s *System) setupData() error {
	dev, err := WaitDisk(SerialData, 10*time.Second)
	if err != nil {
		return err
	}
	fresh := !hasExt4(dev)
	if fresh {
		s.Log("data disk %s is blank: formatting", dev)
		if err := s.run("mkfs.ext4", "-q", "-F", "-L", "skiff-data", "-m", "0",
			"-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", dev); err != nil {
			return err
		}
	}
	os.MkdirAll(DataMount, 0o755)
	// noinit_itable: the host makes the disk sparse, so the inode tables mkfs left
	// uninitialised already read as zeros; the kernel's zeroing of them in the background
	// would only take CPU and disk from the next boots.
	if err := unix.Mount(dev, DataMount, "ext4", unix.MS_NOATIME, "noinit_itable"); err != nil {
		return fmt.Errorf("mount data disk %s: %w", dev, err)
	}
	if !fresh && fsSmallerThanDisk(dev) {
		s.Log("data disk grew: resizing the filesystem")
		if err := s.run("resize2fs", dev); err != nil {
			s.Log("%v", err)
		}
	}
	warning, err := keepReserve()
	if err != nil {
		s.Log("%v", err)
	}
	if warning != "" {
		s.Log("%s", warning)
		s.mu.Lock()
		s.warnings = append(s.warnings, warning)
		s.mu.Unlock()
	}
	return bindDataDirs()
}

// bindDataDirs makes the engines' state directories and binds them from the data location.
func bindDataDirs() error {
	for _, d := range []string{"docker", "containerd", "containers", "home"} {
		os.MkdirAll(filepath.Join(DataMount, d), 0o711)
	}
	for _, b := range [][2]string{{"docker", "/var/lib/docker"}, {"containerd", "/var/lib/containerd"}, {"containers", "/var/lib/containers"}} {
		os.MkdirAll(b[1], 0o711)
		if err := unix.Mount(filepath.Join(DataMount, b[0]), b[1], "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s: %w", b[1], err)
		}
	}
	return nil
}

// hasExt4 checks for the ext superblock magic (0xEF53 at byte 1080).
func hasExt4(dev string) bool {
	f, err := os.Open(dev)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, 2)
	if _, err := f.ReadAt(b, 1080); err != nil {
		return false
	}
	return binary.LittleEndian.Uint16(b) == 0xEF53
}

func fsSmallerThanDisk(dev string) bool {
	f, err := os.Open(dev)
	if err != nil {
		return false
	}
	defer f.Close()
	end, err := f.Seek(0, io.SeekEnd) // a block device seeks to its size
	if err != nil {
		return false
	}
	size := uint64(end)
	var st unix.Statfs_t
	if err := unix.Statfs(DataMount, &st); err != nil {
		return false
	}
	// Leave slack for metadata that statfs does not count.
	return uint64(st.Blocks)*uint64(st.Bsize) < size-size/20
}

// startEngine starts the engine; with Kubernetes on, containerd serves its CRI too.
func (s *System) startEngine() error {
	var cmd *exec.Cmd
	switch s.Seed.Engine {
	case "podman":
		os.MkdirAll("/run/podman", 0o755)
		cmd = exec.Command("podman", "system", "service", "--time=0", "unix://"+EngineSocket)
	default:
		// containerd starts at the same time as dockerd rather than after dockerd's own
		// initialisation, which is how it runs when dockerd spawns it.
		ctrd := exec.Command("containerd")
		if s.kubeOn {
			ctrd.Args = append(ctrd.Args, "--config", kubeContainerdConfig)
		}
		if err := s.startDaemon(&s.containerd, ctrd, "/var/log/containerd.log", nil); err != nil {
			return err
		}
		if forgot, err := ForgetDefaultBridge(DockerNetworkDB, DockerConfig); err != nil {
			s.Log("engine network store: %v", err)
		} else if forgot {
			Trace("default bridge record dropped before dockerd starts")
		}
		cmd = exec.Command("dockerd", "--host", "unix://"+EngineSocket, "--containerd", ContainerdSocket)
		cmd.Env = dockerdEnv()
		if Tracing() {
			cmd.Args = append(cmd.Args, "--debug") // its steps, timed, in engine.log
		}
	}
	os.Symlink(EngineSocket, "/var/run/docker.sock")
	return s.startDaemon(&s.engine, cmd, "/var/log/engine.log", s.engineExited)
}

// watchEngine stops a VM whose engine died unasked: a machine that reads "running" with
// no engine would fail every client while saying all is well. Stopped cleanly (disks
// synced), it reads "crashed" on the host with this reason on the console, and a start
// boots it again with everything it kept. Under WSL the distro cannot power off; the
// engine's end is only logged there.
func (s *System) engineExited(engine *exec.Cmd, status syscall.WaitStatus) {
	s.mu.Lock()
	stopping, wsl := s.stopping, s.wsl
	s.mu.Unlock()
	if stopping || wsl {
		return
	}
	reason := fmt.Sprintf("the engine (%s) exited unexpectedly (status %d, signal %v): stopping the machine", engine.Args[0], status.ExitStatus(), status.Signal())
	s.Log("%s", reason)
	s.mu.Lock()
	s.stopReason = reason
	s.mu.Unlock()
	s.Shutdown(true)
}

// DockerConfig is the image's dockerd configuration.
const DockerConfig = "/etc/docker/daemon.json"

// ContainerdSocket is where the guest's containerd listens.
const ContainerdSocket = "/run/containerd/containerd.sock"

// startDaemon starts a long-running process with its output appended to logPath, records
// it in slot (one of s's process fields, for Shutdown) and logs its exit.
// Warnings are what the boot found that the user should hear (a full data disk).
func (s *System) Warnings() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.warnings...)
}

// startDaemon starts cmd, logging to logPath, and records it in slot; exited, when set,
// hears how it ended.
func (s *System) startDaemon(slot **exec.Cmd, cmd *exec.Cmd, logPath string, exited func(*exec.Cmd, syscall.WaitStatus)) error {
	if f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
		defer f.Close() // the child has its own copy once started
		cmd.Stdout, cmd.Stderr = f, f
	}
	ch, err := s.Reaper.Start(cmd)
	if err != nil {
		return fmt.Errorf("start %s: %w", cmd.Args[0], err)
	}
	s.mu.Lock()
	*slot = cmd
	s.mu.Unlock()
	go func() {
		status := <-ch
		s.Log("%s exited: %v", cmd.Args[0], status)
		if exited != nil {
			exited(cmd, status)
		}
	}()
	return nil
}

func (s *System) startSSHD() error {
	var shares []string
	for _, sh := range s.Seed.Shares {
		shares = append(shares, sh.GuestPath)
	}
	if err := separateRootHome("/etc/passwd", shares); err != nil {
		s.Log("root's home: %v", err)
	}
	os.MkdirAll("/run/skiff", 0o700)
	os.MkdirAll("/run/sshd", 0o755)
	if err := os.WriteFile("/run/skiff/ssh_host_ed25519_key", []byte(s.Seed.HostKey), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile("/run/skiff/authorized_keys", []byte(s.Seed.AuthorizedKeys), 0o600); err != nil {
		return err
	}
	// Loopback only: the host reaches sshd through the agent's authenticated transport
	// (service ssh dials 127.0.0.1:22), and nothing on the VM's networks needs it.
	sshd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-o", "ListenAddress=127.0.0.1")
	if err := s.startDaemon(&s.sshd, sshd, "/var/log/sshd.log", nil); err != nil {
		return err
	}
	// Nobody logs in before the engine answers, and sshd's own start (~0.4 s of emulated
	// CPU) would otherwise take it from the engine's: it runs in the boot's idle moments
	// instead, until EndBoot.
	unix.Setpriority(unix.PRIO_PROCESS, s.sshd.Process.Pid, bootNice)
	return nil
}

// bootNice is the niceness of what the boot starts but nothing waits for.
const bootNice = 19

// EndBoot does what waited for the engine to answer: sshd gets its normal priority back
// (the sessions it starts inherit its niceness) and the late kernel filesystems mount.
func (s *System) EndBoot() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bootEnded {
		return
	}
	s.bootEnded = true
	if s.sshd != nil && s.sshd.Process != nil {
		if err := unix.Setpriority(unix.PRIO_PROCESS, s.sshd.Process.Pid, 0); err != nil {
			s.Log("sshd keeps its boot niceness: %v", err)
		}
	}
	if s.pid1 {
		if err := mountKernelFS(lateKernelFS); err != nil {
			s.Log("%v", err)
		}
	}
	s.recording.Add(1)
	go func() {
		defer s.recording.Done()
		s.recordRuntimeProbes()
	}()
}

func (s *System) mountShares() {
	if len(s.Seed.Shares) == 0 {
		return
	}
	loadModules("9pnet_virtio", "9p", "virtiofs")
	for _, sh := range s.Seed.Shares {
		if err := s.MountShare(sh); err != nil {
			s.Log("share %s: %v", sh.GuestPath, err)
		}
	}
}

// MountShare mounts one host share at its guest path.
func (s *System) MountShare(sh seed.Share) error {
	os.MkdirAll(sh.GuestPath, 0o755)
	var flags uintptr
	if sh.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	switch sh.Type {
	case "virtiofs":
		return unix.Mount(sh.Tag, sh.GuestPath, "virtiofs", flags, "")
	case "9p":
		return unix.Mount(sh.Tag, sh.GuestPath, "9p", flags,
			"trans=virtio,version=9p2000.L,msize=524288,cache=mmap,access=client")
	case "9p-transport":
		return s.mount9pTransport(sh, flags)
	case "drvfs":
		return s.mountDrvfs(sh.Tag, sh.GuestPath, sh.ReadOnly)
	default:
		return fmt.Errorf("share type %q is not supported by this guest", sh.Type)
	}
}

// mount9pTransport mounts a share served by the host agent's 9p server over an
// authenticated transport stream; the kernel keeps the stream's socket for the mount.
func (s *System) mount9pTransport(sh seed.Share, flags uintptr) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := s.Host.Dial(ctx, "9p/"+sh.Tag)
	if err != nil {
		return err
	}
	defer conn.Close()
	fc, ok := conn.(interface{ File() (*os.File, error) })
	if !ok {
		return fmt.Errorf("transport stream %T has no file descriptor", conn)
	}
	f, err := fc.File()
	if err != nil {
		return err
	}
	defer f.Close()
	fd := f.Fd()
	return unix.Mount(sh.Tag, sh.GuestPath, "9p", flags,
		fmt.Sprintf("trans=fd,rfdno=%d,wfdno=%d,version=9p2000.L,msize=262144,cache=mmap,access=client", fd, fd))
}

// EngineReady asks the engine for /_ping over its socket.
func EngineReady(ctx context.Context) (string, error) {
	c := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", EngineSocket)
	}}, Timeout: 2 * time.Second}
	defer c.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://engine/_ping", nil)
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("engine /_ping: %s", resp.Status)
	}
	return resp.Header.Get("Api-Version"), nil
}

// WaitEngine returns once the engine answers. It does not poll the socket: each attempt is
// a socket, a connect and a client under emulation, and at 50 a second that took a third
// of a CPU from the engine's own start. It waits for the socket file to appear, then asks;
// an engine that accepts before it serves holds each attempt until EngineReady's timeout.
func WaitEngine(ctx context.Context) (string, error) {
	if err := waitFile(ctx, EngineSocket); err != nil {
		return "", err
	}
	Trace("engine socket appeared")
	for {
		if v, err := EngineReady(ctx); err == nil {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitFile returns once path exists, woken by inotify on its directory; a slow stat loop
// stands in if inotify is unavailable.
func waitFile(ctx context.Context, path string) error {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err == nil {
		defer unix.Close(fd)
		_, err = unix.InotifyAddWatch(fd, filepath.Dir(path), unix.IN_CREATE|unix.IN_MOVED_TO)
	}
	buf := make([]byte, 4096)
	for {
		if _, serr := os.Stat(path); serr == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			time.Sleep(250 * time.Millisecond)
			continue
		}
		// Bounded so that a cancelled context is noticed.
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, _ := unix.Poll(pfd, 1000); n > 0 {
			unix.Read(fd, buf)
		}
	}
}

// SetClock steps the clock to t when it is off by more than 100ms.
func SetClock(t time.Time, logf func(string, ...any)) time.Duration {
	drift := time.Since(t)
	if drift < 0 {
		drift = -drift
	}
	if drift <= 100*time.Millisecond {
		return drift
	}
	tv := unix.NsecToTimeval(t.UnixNano())
	if err := unix.Settimeofday(&tv); err != nil {
		logf("set clock: %v", err)
	} else {
		logf("clock stepped by %s", drift)
	}
	return drift
}

// Trim discards the data disk's free blocks so the host file shrinks.
func (s *System) Trim() (string, error) {
	cmd := exec.Command("fstrim", "-v", DataMount)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	ws, err := s.Reaper.Run(cmd)
	if err == nil && ws.ExitStatus() != 0 {
		err = fmt.Errorf("fstrim: %s", strings.TrimSpace(out.String()))
	}
	return strings.TrimSpace(out.String()), err
}

// Shutdown stops the engine cleanly, flushes the disks and powers off. It does not return
// when it succeeds.
func (s *System) Shutdown(poweroff bool) {
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	recorded := make(chan struct{})
	go func() { s.recording.Wait(); close(recorded) }()
	select {
	case <-recorded:
	case <-time.After(5 * time.Second):
	}
	s.mu.Lock()
	engine, sshd := s.engine, s.sshd
	s.mu.Unlock()
	if engine != nil && engine.Process != nil {
		engine.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() {
			for {
				if err := engine.Process.Signal(syscall.Signal(0)); err != nil {
					close(done)
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			s.Log("engine did not stop in 15s; killing it")
		}
	}
	if sshd != nil && sshd.Process != nil {
		sshd.Process.Kill()
	}
	s.mu.Lock()
	ctrd := s.containerd
	s.mu.Unlock()
	if ctrd != nil && ctrd.Process != nil {
		ctrd.Process.Signal(syscall.SIGTERM)
		time.Sleep(300 * time.Millisecond)
	}
	if s.wsl {
		StopDescendants(5 * time.Second)
	} else {
		unix.Kill(-1, unix.SIGTERM)
		time.Sleep(200 * time.Millisecond)
		unix.Kill(-1, unix.SIGKILL)
	}
	unix.Sync()
	// The kubelet's volumes and the containers' root filesystems, which hold the data disk.
	unmountUnder("/run/containerd", "/run/netns", KubeDir, "/var/log/pods")
	// Shares first, then the binds into the data disk, then the data disk itself: a busy
	// data disk would be detached lazily and need journal recovery at the next boot.
	var mounts []string
	for _, sh := range s.Seed.Shares {
		mounts = append(mounts, sh.GuestPath)
	}
	mounts = append(mounts, "/var/log/pods", "/var/lib/docker", "/var/lib/containerd", "/var/lib/containers", DataMount)
	for _, m := range mounts {
		if err := unix.Unmount(m, 0); err != nil {
			unix.Unmount(m, unix.MNT_DETACH)
		}
	}
	unix.Sync()
	s.mu.Lock()
	reason := s.stopReason
	s.mu.Unlock()
	if reason != "" {
		s.Log("%s", reason) // the host reads the console's last word as the reason
	}
	if poweroff {
		unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	}
}
