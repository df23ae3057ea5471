package guestinit

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-dev/skiff/images/seed"
)

// WSLNetwork is how a WSL distro reaches the network (vmm/wsl2's --network).
type WSLNetwork string

const (
	// WSLNetworkUser: the agent carries the distro's frames to the host's user-mode network
	// over vsock (Options.VsockNetwork); the distro's eth0 is a TAP device.
	WSLNetworkUser WSLNetwork = "user"
	// WSLNetworkWSL: WSL's own NAT (or mirrored) network, configured by WSL; left alone.
	WSLNetworkWSL WSLNetwork = "wsl"
)

// WSLOptions make Boot run under WSL's own init (`skiff-agent boot-wsl`): an ordinary
// process in a distro of a utility VM whose kernel, PID 1 and /dev are Microsoft's and
// shared with the user's other distros.
type WSLOptions struct {
	// Seed is the seed file, where WSL names Windows paths: /mnt/<drive>/...
	Seed    string
	Network WSLNetwork
}

// WSLNetworkPort is the host's vsock port for a distro's frames when the seed names none
// (vmm/wsl2.DefaultNetworkPort).
const WSLNetworkPort = 1025

// prepareWSL does what a VM's init would have: mounts what WSL's init did not (it mounts
// /proc, /sys and /dev; not always cgroup2, bpffs or mqueue) and makes the agent the reaper
// of orphans (containerd's shims), which would otherwise go to WSL's init and leave the
// agent unable to wait for what it stops.
func prepareWSL() error {
	mounted, err := mountPoints("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var missing []kernelMount
	for _, m := range kernelFS {
		if !mounted[m.dst] {
			missing = append(missing, m)
		}
	}
	if err := mountKernelFS(missing); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become the reaper of the engine's processes: %w", err)
	}
	return nil
}

// mountPoints reads the mount points of a mountinfo file.
func mountPoints(path string) (map[string]bool, error) {
	mounts, err := readMountinfo(path)
	if err != nil {
		return nil, err
	}
	points := map[string]bool{}
	for _, m := range mounts {
		points[m.point] = true
	}
	return points, nil
}

// setupDataDir is setupData for a distro: WSL has no data disk (the distro's own ext4
// disk holds everything), so the data location is a directory on the root, laid out and
// bound as on a VM so that everything after (Info, Trim, Shutdown) is the same.
func (s *System) setupDataDir() error {
	if err := os.MkdirAll(DataMount, 0o755); err != nil {
		return fmt.Errorf("data location: %w", err)
	}
	return bindDataDirs()
}

// readSeedFile reads the seed file. Drives are not automounted in Skiff's distro
// (wsl.conf), so when the file is not there the folder holding it is mounted read-only at
// its /mnt/<drive>/... path for the read and unmounted after: the machine directory has
// the machine's keys, which the engine's containers must not see.
func (s *System) readSeedFile(path string) (*seed.Seed, error) {
	if _, err := os.Stat(path); err == nil {
		return seed.ReadFile(path)
	}
	dir := filepath.Dir(path)
	win, err := WindowsPath(dir)
	if err != nil {
		return nil, fmt.Errorf("seed %s: %w", path, err)
	}
	if err := s.mountDrvfs(win, dir, true); err != nil {
		return nil, fmt.Errorf("seed %s: %w", path, err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	return seed.ReadFile(path)
}

// WindowsPath inverts WSL's naming of Windows paths: /mnt/c/Users/me -> C:\Users\me.
func WindowsPath(p string) (string, error) {
	rest, ok := strings.CutPrefix(filepath.Clean(p), "/mnt/")
	if !ok || len(rest) == 0 || (len(rest) > 1 && rest[1] != '/') || !isDriveLetter(rest[0]) {
		return "", fmt.Errorf("%s is not a Windows drive path (/mnt/<drive>/...)", p)
	}
	return strings.ToUpper(rest[:1]) + `:\` + strings.ReplaceAll(strings.TrimPrefix(rest[1:], "/"), "/", `\`), nil
}

func isDriveLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// mountDrvfs mounts a Windows folder (a share's tag, or the seed's folder) with WSL's
// drvfs, whose mount helper is WSL's init; through the reaper, which waits for children.
func (s *System) mountDrvfs(win, dst string, readOnly bool) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	return s.run("mount", drvfsArgs(win, dst, readOnly)...)
}

func drvfsArgs(win, dst string, readOnly bool) []string {
	opts := "rw"
	if readOnly {
		opts = "ro"
	}
	return []string{"-t", "drvfs", "-o", opts, win, dst}
}

// wslModules says whether the running kernel's modules are in the distro's root. WSL runs
// Microsoft's kernel, whose modules the image does not have; a stand-in on Skiff's own
// kernel does.
func wslModules() bool {
	_, err := os.Stat(filepath.Join(ModulesDir(), "modules.dep"))
	return err == nil
}

// configureWSLNetwork gives the distro its network for the seed: nothing with WSL's own;
// with Skiff's user-mode network, the vsock helper's TAP device, as for a VM without a NIC.
func (s *System) configureWSLNetwork(o *WSLOptions) error {
	if o.Network != WSLNetworkUser {
		return nil
	}
	if s.Seed.Network.VsockPort == 0 {
		s.Seed.Network.VsockPort = WSLNetworkPort
	}
	return s.setupNetwork()
}

// StopDescendants ends what the agent started and what re-parented to it (shims and
// their containers): SIGTERM, then SIGKILL for what is left after grace. Unlike a VM's
// init it must not signal every process: the distro may have the user's sessions, and
// WSL's init and relay.
func StopDescendants(grace time.Duration) {
	signalDescendants(unix.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) && signalDescendants(0) > 0 {
		time.Sleep(50 * time.Millisecond)
	}
	signalDescendants(unix.SIGKILL)
}

// signalDescendants sends sig to every process below this one and says how many there
// were. Zombies are reaped by the Reaper and not counted.
func signalDescendants(sig syscall.Signal) int {
	parent := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, state, ok := procStat(pid); ok && state != 'Z' {
			parent[pid] = ppid
		}
	}
	self, n := os.Getpid(), 0
	for pid := range parent {
		for p, hops := parent[pid], 0; p > 1 && hops < 64; p, hops = parent[p], hops+1 {
			if p == self {
				unix.Kill(pid, sig)
				n++
				break
			}
		}
	}
	return n
}

// procStat reads a process's parent and state from /proc/PID/stat.
func procStat(pid int) (ppid int, state byte, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, false
	}
	fs := strings.Fields(string(b[i+1:]))
	if len(fs) < 2 || len(fs[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(fs[1])
	return ppid, fs[0][0], err == nil
}

// LoadModuleList loads every module of an initrd's module list (dir/load.list, the
// image's initrd.img) in stage 1's order and returns when all have been tried: for the
// WSL stand-in's init (vmm/qemu), which boots Skiff's kernel from the same initrd.
func LoadModuleList(dir string) error {
	m, err := readModuleList(dir)
	if err != nil {
		return fmt.Errorf("modules: %w", err)
	}
	m.loadInOrder(m.first, loadModuleAt)
	m.load(m.root, loadModuleAt)
	m.load(m.rest, loadModuleAt)
	m.release()
	return nil
}
