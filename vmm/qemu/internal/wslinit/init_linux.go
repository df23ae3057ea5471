package wslinit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-dev/skiff/images/guestinit"
	"github.com/skiff-dev/skiff/images/seed"
)

// distroMount is where the distro's disk is mounted before it becomes the root.
const distroMount = "/distro"

// standInHostname stands for the Windows computer's name, which WSL gives its distros.
const standInHostname = "windows-host"

// terminateGrace is how long the distro's processes have between SIGTERM and SIGKILL
// when the machine is switched off under them, as `wsl --terminate` gives them.
const terminateGrace = 10 * time.Second

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%8.3f] wsl-standin: %s\n", guestinit.Uptime(), fmt.Sprintf(format, args...))
}

// Main is PID 1. It powers the VM off when the distro's command ends, as WSL's stops the
// distro (and wsl.exe returns) when it does.
func Main() {
	// Ctrl-Alt-Del (QEMU's send-key, the host's "terminate") comes as SIGINT.
	unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF)
	terms := make(chan os.Signal, 1)
	signal.Notify(terms, unix.SIGTERM, unix.SIGINT, unix.SIGPWR)
	if err := run(terms); err != nil {
		logf("%v", err)
	}
	shutdown()
}

func run(terms <-chan os.Signal) error {
	for _, m := range []struct{ src, dst, fs string }{
		{"devtmpfs", "/dev", "devtmpfs"}, {"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"},
	} {
		os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.fs, unix.MS_NOSUID, ""); err != nil && err != unix.EBUSY {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	b, err := os.ReadFile(ConfigPath)
	if err != nil {
		return err
	}
	var cfg Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("%s: %w", ConfigPath, err)
	}
	if len(cfg.Command) == 0 {
		return fmt.Errorf("%s names no command", ConfigPath)
	}
	if err := guestinit.LoadModuleList("/modules"); err != nil {
		logf("%v", err)
	}
	sd, err := mountDistro(cfg)
	if err != nil {
		return err
	}
	if err := configureNetwork(sd); err != nil {
		return err
	}
	cmd := exec.Command(cfg.Command[0], cfg.Command[1:]...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "USER=root", "TERM=dumb"}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	logf("running %s", strings.Join(cfg.Command, " "))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", cfg.Command[0], err)
	}
	ws := superviseDistro(cmd.Process.Pid, terms)
	logf("%s exited: %s", cfg.Command[0], describe(ws))
	return nil
}

// mountDistro makes the distro's disk the root: imported from the tar on first boot, with
// what WSL's init mounts (/proc, /sys, /dev, /run, /tmp) and the seed file where the
// distro sees Windows' drive. It returns the seed, whose address WSL's network gets.
func mountDistro(cfg Config) (*seed.Seed, error) {
	dev, err := guestinit.WaitDisk(cfg.DistroSerial, 10*time.Second)
	if err != nil {
		return nil, err
	}
	os.MkdirAll(distroMount, 0o755)
	// noinit_itable: the host made the disk sparse, so the inode tables mkfs left for later
	// already read as zeros; the kernel's background zeroing would take the boot's CPU and
	// disk (as stage 2 mounts the data disk).
	if err := unix.Mount(dev, distroMount, "ext4", unix.MS_NOATIME, "noinit_itable"); err != nil {
		return nil, fmt.Errorf("mount the distro's disk %s: %w", dev, err)
	}
	if err := importOnce(cfg); err != nil {
		return nil, err
	}
	seedDev, err := guestinit.WaitDisk(cfg.SeedSerial, 10*time.Second)
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(seedDev)
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	sd, err := seed.Unmarshal(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"/dev", "/proc", "/sys"} {
		if err := unix.Mount(d, distroMount+d, "", unix.MS_MOVE, ""); err != nil {
			return nil, fmt.Errorf("move %s: %w", d, err)
		}
	}
	if err := os.Chdir(distroMount); err != nil {
		return nil, err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return nil, fmt.Errorf("switch root: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return nil, fmt.Errorf("chroot: %w", err)
	}
	os.Chdir("/")
	for _, d := range []string{"/run", "/tmp"} {
		os.MkdirAll(d, 0o755)
		if err := unix.Mount("tmpfs", d, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
			return nil, fmt.Errorf("mount %s: %w", d, err)
		}
	}
	os.Chmod("/run", 0o755)
	// The seed's folder only, read-only: what boot-wsl itself mounts with drvfs on WSL,
	// where Skiff's wsl.conf turns the drives' automount off.
	dir := filepath.Dir(cfg.SeedPath)
	os.MkdirAll(dir, 0o755)
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700"); err != nil {
		return nil, fmt.Errorf("seed folder: %w", err)
	}
	if err := os.WriteFile(cfg.SeedPath, raw, 0o600); err != nil {
		return nil, fmt.Errorf("seed file: %w", err)
	}
	unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	return sd, nil
}

// importedMarker says the tar was unpacked completely. It is kept in lost+found, outside
// the distro's own files.
const importedMarker = distroMount + "/lost+found/skiff-wsl-imported"

// importOnce is `wsl --import`'s unpack, done on the distro's first boot.
func importOnce(cfg Config) error {
	if _, err := os.Stat(importedMarker); err == nil {
		return nil
	}
	tarDev, err := guestinit.WaitDisk(cfg.TarSerial, 10*time.Second)
	if err != nil {
		return err
	}
	start := time.Now()
	f, err := os.Open(tarDev)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := Unpack(f, distroMount)
	if err != nil {
		return fmt.Errorf("import the root filesystem: %w", err)
	}
	unix.Sync()
	os.MkdirAll(filepath.Dir(importedMarker), 0o700)
	if err := os.WriteFile(importedMarker, nil, 0o600); err != nil {
		return err
	}
	unix.Sync()
	logf("imported the root filesystem: %d entries in %s", n, time.Since(start).Round(time.Millisecond))
	return nil
}

// configureNetwork is WSL's NAT for the stand-in: the seed's address on the NIC, and the
// name files, which WSL generates too.
func configureNetwork(sd *seed.Seed) error {
	// WSL names every distro after the Windows computer (boot-wsl leaves the name alone).
	unix.Sethostname([]byte(standInHostname))
	os.WriteFile("/etc/hostname", []byte(standInHostname+"\n"), 0o644)
	iface, err := guestinit.WaitInterface(5 * time.Second)
	if err != nil {
		return err
	}
	return guestinit.ConfigureSeedNetwork(iface, sd)
}

// superviseDistro reaps every process that re-parents to PID 1 until the distro's command
// exits. A terminate signal is `wsl --terminate`: SIGTERM to every process, SIGKILL to
// what is left after terminateGrace.
func superviseDistro(pid int, terms <-chan os.Signal) syscall.WaitStatus {
	var kill <-chan time.Time
	for {
		select {
		case sig := <-terms:
			logf("%v: terminating the distro", sig)
			unix.Kill(-1, unix.SIGTERM)
			kill = time.After(terminateGrace)
		case <-kill:
			logf("the distro did not stop in %s: killing it", terminateGrace)
			unix.Kill(-1, unix.SIGKILL)
		case <-time.After(100 * time.Millisecond):
		}
		for {
			var ws syscall.WaitStatus
			p, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if p <= 0 || err != nil {
				break
			}
			if p == pid {
				return ws
			}
		}
	}
}

func describe(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		return "killed by " + ws.Signal().String()
	}
	return fmt.Sprintf("exit %d", ws.ExitStatus())
}

// shutdown ends what is left of the distro, as WSL does once its command is gone,
// flushes and unmounts its disk, and powers off.
func shutdown() {
	unix.Kill(-1, unix.SIGTERM)
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if p, _ := syscall.Wait4(-1, nil, syscall.WNOHANG, nil); p < 0 {
			break // no children left
		}
	}
	unix.Kill(-1, unix.SIGKILL)
	for {
		if p, _ := syscall.Wait4(-1, nil, 0, nil); p <= 0 {
			break
		}
	}
	unix.Sync()
	unmountAll()
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

// unmountAll unmounts everything below the root, deepest first, and leaves the root
// read-only: the distro's disk is clean for the next boot.
func unmountAll() {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var points []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] != "/" {
			points = append(points, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	for _, p := range points {
		if unix.Unmount(p, 0) != nil {
			unix.Unmount(p, unix.MNT_DETACH)
		}
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		logf("root stays writable: %v", err)
	}
}
