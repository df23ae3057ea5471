// Package guestinit is the guest's init: stage 1 runs from the initrd and mounts the
// read-only root with a writable overlay; stage 2 runs as PID 1 in that root, prepares the
// system and supervises the engine, sshd and the agent. No systemd, no shell scripts: one
// static binary, so boot is a handful of syscalls and three execs.
package guestinit

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// AgentPath is where stage 1 leaves a copy of this binary in the new root.
const AgentPath = "/usr/sbin/skiff-agent"

// Disk serials the host gives each virtio disk, so the guest never depends on probe order.
const (
	SerialRoot = "skiff-root"
	SerialData = "skiff-data"
	SerialSeed = "skiff-seed"
	// SerialEngine is the machine's engine layer, stacked over a root that wants one.
	SerialEngine = "skiff-engine"
)

// EngineLayerNote is the file by which a root says it holds no engine: the guest stacks
// the engine layer the host attached over it (images/rootfs.sh split_engines).
const EngineLayerNote = "/usr/lib/skiff/engine-layer"

// Stage1 mounts the root and switches to it. Under systemd it execs systemd and returns
// only on failure; otherwise it returns nil and the caller goes on as stage 2 in the same
// process, since a fresh exec of the agent cost a second of start-up under emulation.
func Stage1() error {
	for _, m := range []struct{ src, dst, fs string }{
		{"devtmpfs", "/dev", "devtmpfs"}, {"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"},
	} {
		os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.fs, unix.MS_NOSUID, ""); err != nil && err != unix.EBUSY {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	Trace("stage 1")
	mods, err := readModuleList("/modules")
	if err != nil {
		logf("stage1: %v", err)
		mods = newModuleList(-1)
	}
	// Both rewrite hot kernel code (see PinRuntimeKeys), so they go while nothing else runs.
	pinKeysInStage1()
	mods.loadInOrder(mods.first, loadModuleAt)
	mods.load(mods.root, loadModuleAt)
	Trace("stage 1: root modules loaded")
	// The rest (data disk, network, vsock) load while the root is mounted; stage 2 waits
	// for each one where it needs it.
	stage1Mods = mods
	go func() {
		mods.load(mods.rest, loadModuleAt)
		mods.release()
		Trace("stage 1: all modules loaded")
		close(mods.finished)
	}()
	root, err := WaitDisk(SerialRoot, 10*time.Second)
	if err != nil {
		return err
	}
	for _, d := range []string{"/lower", "/engine", "/upper", "/newroot"} {
		os.MkdirAll(d, 0o755)
	}
	if err := unix.Mount(root, "/lower", "squashfs", unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mount root %s: %w", root, err)
	}
	lower, err := engineLower()
	if err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", "/upper", "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("mount overlay upper: %w", err)
	}
	os.MkdirAll("/upper/data", 0o755)
	os.MkdirAll("/upper/work", 0o755)
	if err := unix.Mount("overlay", "/newroot", "overlay", 0, "lowerdir="+lower+",upperdir=/upper/data,workdir=/upper/work"); err != nil {
		return fmt.Errorf("mount overlay: %w", err)
	}
	// Keep the pieces of the overlay reachable from the new root.
	for _, d := range []string{"lower", "engine", "upper"} {
		dst := "/newroot/run/skiff/" + d
		os.MkdirAll(dst, 0o755)
		unix.Mount("/"+d, dst, "", unix.MS_MOVE, "")
	}
	for _, d := range []string{"/dev", "/proc", "/sys"} {
		if err := unix.Mount(d, "/newroot"+d, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s: %w", d, err)
		}
	}
	if err := os.Chdir("/newroot"); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("switch root: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	os.Chdir("/")
	Trace("stage 1 done: root mounted")
	if cmdlineValue("skiff.init") == "systemd" {
		// An exec ends the goroutines: finish here what they would have.
		waitStage1Modules()
		if err := installAgent(); err != nil {
			return err
		}
		return unix.Exec("/sbin/init", []string{"/sbin/init"}, os.Environ())
	}
	// Only a systemd unit or a person needs the binary in the root; not the boot.
	go func() {
		if err := installAgent(); err != nil {
			logf("%v", err)
		}
	}()
	go loadHyperVServices()
	return nil
}

// engineLower mounts the engine layer at /engine when the root at /lower wants one, and
// returns the overlay's lower directories, uppermost first.
func engineLower() (string, error) {
	if _, err := os.Stat("/lower" + EngineLayerNote); err != nil {
		return "/lower", nil
	}
	dev, err := WaitDisk(SerialEngine, 10*time.Second)
	if err != nil {
		return "", fmt.Errorf("the root holds no engine and the engine layer is missing: %w", err)
	}
	if err := unix.Mount(dev, "/engine", "squashfs", unix.MS_RDONLY, ""); err != nil {
		return "", fmt.Errorf("mount engine layer %s: %w", dev, err)
	}
	return "/engine:/lower", nil
}

// installAgent copies the running binary (the initrd's /init) into the new root.
func installAgent() error {
	self, err := os.ReadFile("/proc/self/exe")
	if err == nil {
		err = os.WriteFile(AgentPath, self, 0o755)
	}
	if err != nil {
		return fmt.Errorf("install agent: %w", err)
	}
	return nil
}

// stage1Mods is stage 1's list while its modules load; nil when stage 1 ran in another
// process (stage 2 under systemd).
var stage1Mods *moduleList

// waitStage1Module waits for stage 1's attempt at one module (a name like "ext4.ko").
func waitStage1Module(name string) {
	if stage1Mods != nil {
		stage1Mods.wait(name)
	}
}

// waitStage1Modules waits until stage 1 has tried every module it carries.
func waitStage1Modules() {
	if stage1Mods != nil {
		<-stage1Mods.finished
	}
}

// moduleList is stage 1's load.list. Each line is a module file followed by the files it
// needs, earlier in the list; a module whose dependency did not load is skipped, which is
// how Hyper-V's drivers stay quiet on QEMU. Lines before "==" load one at a time before
// anything else: their init rewrites kernel code that the others' loading runs (a static
// key, like virtio_balloon's free page reporting in the page allocator). Lines from there
// to "--" are what mounting the root needs. The directory is held open by descriptor
// because the root changes under the loading of the rest.
type moduleList struct {
	dir               int
	first, root, rest [][]string
	mu                sync.Mutex
	loaded            map[string]bool
	present           map[string]func() bool   // busPresent, but for tests
	done              map[string]chan struct{} // closed when a module's attempt has ended
	finished          chan struct{}            // closed when every line has been tried
}

func newModuleList(dir int) *moduleList {
	return &moduleList{dir: dir, loaded: map[string]bool{}, present: busPresent, done: map[string]chan struct{}{}, finished: make(chan struct{})}
}

func readModuleList(dir string) (*moduleList, error) {
	b, err := os.ReadFile(filepath.Join(dir, "load.list"))
	if err != nil {
		return nil, err
	}
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	m := newModuleList(fd)
	part := &m.root
	for _, line := range strings.Split(string(b), "\n") {
		switch f := strings.Fields(line); {
		case len(f) == 0:
		case f[0] == "==":
			m.first, m.root = m.root, nil
		case f[0] == "--":
			part = &m.rest
		default:
			*part = m.add(*part, f)
		}
	}
	return m, nil
}

// add appends line f to part and gives its module a done channel for wait.
func (m *moduleList) add(part [][]string, f []string) [][]string {
	m.done[f[0]] = make(chan struct{})
	return append(part, f)
}

// load tries every line at once, each as soon as the modules it needs are in, and returns
// when all have been tried. Modules load in parallel: under emulation each one's
// relocation and init is CPU work that the second vCPU otherwise sits out.
func (m *moduleList) load(lines [][]string, load func(dir int, name string) error) {
	var wg sync.WaitGroup
	for _, f := range lines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.try(f, load)
		}()
	}
	wg.Wait()
}

// loadInOrder tries the lines one after another.
func (m *moduleList) loadInOrder(lines [][]string, load func(dir int, name string) error) {
	for _, f := range lines {
		m.try(f, load)
	}
}

// try loads line f's module once the modules it needs are in, if they loaded.
func (m *moduleList) try(f []string, load func(dir int, name string) error) {
	ok := true
	for _, dep := range f[1:] {
		ok = ok && m.wait(dep)
	}
	var err error
	if present, gated := m.present[f[0]]; ok && gated && !present() {
		ok, err = false, unix.ENODEV
	}
	if ok {
		err = load(m.dir, f[0])
	}
	m.mu.Lock()
	m.loaded[f[0]] = ok && err == nil
	m.mu.Unlock()
	close(m.done[f[0]])
	// ENODEV: no such hardware here (Hyper-V's bus on QEMU); not worth a line.
	if err != nil && err != unix.ENODEV && err != unix.ENOENT {
		logf("module %s: %v", f[0], err)
	}
}

// busPresent says whether the hardware a bus driver serves is here, for a driver whose
// mere load attempt is costly: hv_vmbus's relocation and failing init took ~0.1 s of
// emulated CPU from every QEMU boot. Hyper-V describes its VMBus in ACPI.
var busPresent = map[string]func() bool{
	"hv_vmbus.ko": vmbusHere,
	// The SCSI core and disk driver serve only Hyper-V's disks and QEMU's virtio-scsi
	// (scsi_linux.go); a virtio-blk boot skips them.
	"virtio_scsi.ko": virtioSCSIHere,
	"scsi_common.ko": scsiHere,
	"scsi_mod.ko":    scsiHere,
}

func vmbusHere() bool { return acpiHas("/sys/bus/acpi/devices", "VMBUS", "VMBus", "MSFT1000") }

// acpiHas says whether ACPI's device directory lists a device with one of the hardware
// IDs; true when there is no ACPI to ask (a device-tree boot), so that the driver gets its
// try.
func acpiHas(dir string, ids ...string) bool {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return true
	}
	for _, e := range ents {
		for _, id := range ids {
			if strings.HasPrefix(e.Name(), id+":") {
				return true
			}
		}
	}
	return false
}

// wait blocks until name's attempt has ended and says whether it loaded. A name the list
// does not have never loads.
func (m *moduleList) wait(name string) bool {
	ch, ok := m.done[name]
	if !ok {
		return false
	}
	<-ch
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.loaded[name]
}

// release removes the module files, which would otherwise stay in memory for good.
func (m *moduleList) release() {
	if m.dir < 0 {
		return
	}
	for _, part := range [][][]string{m.root, m.rest} {
		for _, f := range part {
			unix.Unlinkat(m.dir, f[0], 0)
		}
	}
	unix.Unlinkat(m.dir, "load.list", 0)
	unix.Close(m.dir)
}

func loadModuleAt(dir int, name string) error {
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	err = unix.FinitModule(fd, "", 0)
	if err == unix.EEXIST {
		return nil
	}
	return err
}

// WaitDisk finds the block device of one of Skiff's disks, waiting for it to appear: by
// its virtio serial or, on Hyper-V, by its SCSI LUN (scsi_linux.go).
func WaitDisk(serial string, timeout time.Duration) (string, error) {
	f := bootDisks()
	deadline := time.Now().Add(timeout)
	for {
		dev, err := f.find(serial)
		if dev != "" || err != nil {
			return dev, err
		}
		if time.Now().After(deadline) {
			if lun := f.lunOf(serial); lun >= 0 {
				return "", fmt.Errorf("no disk with serial %q, nor at SCSI LUN %d (%s), after %s", serial, lun, lunsArg, timeout)
			}
			return "", fmt.Errorf("no disk with serial %q after %s", serial, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func cmdlineValue(key string) string {
	b, _ := os.ReadFile("/proc/cmdline")
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

// logf writes to the console: before the agent is up it is the only place anyone will look.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%8.3f] skiff-init: %s\n", Uptime(), fmt.Sprintf(format, args...))
}

// Uptime is the seconds since the kernel started, the clock the kernel's own log uses.
func Uptime() float64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return float64(ts.Nano()) / 1e9
}

// Tracing says whether the kernel command line asks for the boot trace. Read on first
// use: stage 1 mounts /proc only after the package is initialised.
var Tracing = sync.OnceValue(func() bool { return cmdlineValue("skiff.trace") != "" })

// Trace marks a boot phase on the console when the kernel command line has skiff.trace=1,
// which is how a slow boot is taken apart (SKIFF_KERNEL_ARGS=skiff.trace=1 on the host).
// Each line also carries the wall clock, which the engine's own log is stamped with.
func Trace(format string, args ...any) {
	if Tracing() {
		logf("trace: "+format+" (wall %s)", append(args, time.Now().UTC().Format("15:04:05.000"))...)
	}
}
