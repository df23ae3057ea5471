// Package guestinit is the guest's init: stage 1 runs from the initrd and mounts the
// read-only root with a writable overlay; stage 2 runs as PID 1 in that root, prepares the
// system and supervises the engine, sshd and the agent. No systemd, no shell scripts: one
// static binary, so boot is a handful of syscalls and three execs.
package guestinit

import (
	"bufio"
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
)

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
	if err := LoadModuleList("/modules", "/modules/load.list", loadModule); err != nil {
		logf("stage1: %v", err)
	}
	Trace("stage 1 modules loaded")
	// The initrd's files stay in memory for good unless removed.
	os.RemoveAll("/modules")
	root, err := WaitDisk(SerialRoot, 10*time.Second)
	if err != nil {
		return err
	}
	for _, d := range []string{"/lower", "/upper", "/newroot"} {
		os.MkdirAll(d, 0o755)
	}
	if err := unix.Mount(root, "/lower", "squashfs", unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mount root %s: %w", root, err)
	}
	if err := unix.Mount("tmpfs", "/upper", "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("mount overlay upper: %w", err)
	}
	os.MkdirAll("/upper/data", 0o755)
	os.MkdirAll("/upper/work", 0o755)
	if err := unix.Mount("overlay", "/newroot", "overlay", 0, "lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work"); err != nil {
		return fmt.Errorf("mount overlay: %w", err)
	}
	// Keep the pieces of the overlay reachable from the new root.
	for _, d := range []string{"lower", "upper"} {
		dst := "/newroot/run/skiff/" + d
		os.MkdirAll(dst, 0o755)
		unix.Mount("/"+d, dst, "", unix.MS_MOVE, "")
	}
	self, err := os.ReadFile("/init")
	if err != nil {
		return err
	}
	if err := os.WriteFile("/newroot"+AgentPath, self, 0o755); err != nil {
		return fmt.Errorf("install agent: %w", err)
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
		return unix.Exec("/sbin/init", []string{"/sbin/init"}, os.Environ())
	}
	return nil
}

// LoadModuleList loads the modules named in list from dir. Each line is a module file
// followed by the files it needs, earlier in the list; a module whose dependency did not
// load is skipped, which is how Hyper-V's drivers stay quiet on QEMU.
func LoadModuleList(dir, list string, load func(path string) error) error {
	f, err := os.Open(list)
	if err != nil {
		return err
	}
	defer f.Close()
	loaded := map[string]bool{}
	sc := bufio.NewScanner(f)
lines:
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		for _, dep := range fields[1:] {
			if !loaded[dep] {
				continue lines
			}
		}
		name := fields[0]
		err := load(filepath.Join(dir, name))
		loaded[name] = err == nil
		// ENODEV: no such hardware here (Hyper-V's bus on QEMU); not worth a line.
		if err != nil && err != unix.ENODEV && err != unix.ENOENT {
			logf("module %s: %v", name, err)
		}
	}
	return sc.Err()
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	if strings.HasSuffix(path, ".xz") || strings.HasSuffix(path, ".zst") || strings.HasSuffix(path, ".gz") {
		flags = unix.MODULE_INIT_COMPRESSED_FILE
	}
	err = unix.FinitModule(int(f.Fd()), "", flags)
	if err == unix.EEXIST {
		return nil
	}
	return err
}

// WaitDisk finds the block device whose virtio serial is serial, waiting for it to appear.
func WaitDisk(serial string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		if dev := FindDisk(serial); dev != "" {
			return dev, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no disk with serial %q after %s", serial, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// FindDisk returns /dev/NAME for the disk with the given serial, or "".
func FindDisk(serial string) string {
	ents, _ := os.ReadDir("/sys/block")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/sys/block", e.Name(), "serial"))
		if err == nil && strings.TrimSpace(string(b)) == serial {
			return "/dev/" + e.Name()
		}
	}
	return ""
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
func Trace(format string, args ...any) {
	if Tracing() {
		logf("trace: "+format, args...)
	}
}
