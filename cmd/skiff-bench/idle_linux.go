package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/skiff-dev/skiff/machine"
)

// procCPU returns a process's user+system CPU time.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which may contain spaces, start after ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100, nil // USER_HZ is 100 on Linux
}

func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS for %d", pid)
}

// benchIdle reports the host agent's RSS and CPU use and the VM process's CPU use while
// the machine idles, next to the floor: the same QEMU, kernel and devices with an init
// that only sleeps (no agent, no engine), idling over the same window.
func benchIdle(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	image := fs.String("image", "images/out/amd64", "image directory")
	skiff := fs.String("skiff", "bin/skiff", "skiff CLI")
	secs := fs.Int("seconds", 60, "idle window")
	floor := fs.Bool("floor", true, "idle a VM with a sleeping init alongside, as the floor")
	share := fs.Bool("share", true, "share a host folder, as the default machine shares the home folder (file events follow it)")
	fs.Parse(args)
	b, cleanup, err := newBench(*skiff)
	if err != nil {
		return err
	}
	defer cleanup()
	var initArgs []string
	if *share {
		dir := filepath.Join(b.home, "shared")
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		initArgs = append(initArgs, "--mount", dir+":/mnt/shared")
	}
	d, rm, err := b.startMachine("idle", *image, "1G", initArgs...)
	if err != nil {
		return err
	}
	defer rm()
	pid, err := readPID(d.File(machine.FileAgentPID))
	if err != nil {
		return err
	}
	vmPID, err := readPID(d.File(machine.FileVMPID))
	if err != nil {
		return err
	}
	floorPID := 0
	if *floor {
		stop, fpid, err := startFloorVM(b.home, vmPID)
		if err != nil {
			return fmt.Errorf("the floor VM: %w", err)
		}
		defer stop()
		floorPID = fpid
	}
	// Let start-up work pass: the first time sync, the agent's first trim, the floor's
	// boot (slow under emulation on a busy host).
	time.Sleep(30 * time.Second)
	pids := []int{pid, vmPID, floorPID}
	c0 := make([]time.Duration, len(pids))
	for i, p := range pids {
		if p != 0 {
			if c0[i], err = procCPU(p); err != nil {
				return err
			}
		}
	}
	t0 := time.Now()
	var peak int64
	for time.Since(t0) < time.Duration(*secs)*time.Second {
		if rss, err := procRSS(pid); err == nil && rss > peak {
			peak = rss
		}
		time.Sleep(time.Second)
	}
	wall := time.Since(t0)
	pct := make([]float64, len(pids))
	for i, p := range pids {
		if p != 0 {
			c1, err := procCPU(p)
			if err != nil {
				return fmt.Errorf("pid %d ended during the window: %w", p, err)
			}
			pct[i] = 100 * (c1 - c0[i]).Seconds() / wall.Seconds()
		}
	}
	fmt.Printf("idle over %s (a shared folder: %v), side by side:\n", wall.Round(time.Second), *share)
	fmt.Printf("  host agent:             peak RSS %.1f MB, CPU %.3f%% of a core (goals: <= 20 MB, <= 0.1%%)\n", float64(peak)/1e6, pct[0])
	fmt.Printf("  VM process (Skiff):     CPU %.2f%% of a core\n", pct[1])
	if floorPID != 0 {
		fmt.Printf("  VM process (floor):     CPU %.2f%% of a core (same QEMU and kernel, init that sleeps)\n", pct[2])
		fmt.Printf("  Skiff over the floor:   %.2f points\n", pct[1]-pct[2])
	}
	return nil
}

func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// startFloorVM runs the command line of the running VM vmPID with its initrd replaced by
// one whose init sleeps forever, and without what needs the host agent (network, QMP,
// the memory file it passes, the pid file).
func startFloorVM(dir string, vmPID int) (stop func(), pid int, err error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", vmPID))
	if err != nil {
		return nil, 0, err
	}
	argv := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
	initrd := filepath.Join(dir, "floor-initrd.img")
	if err := writeSleepInitrd(initrd); err != nil {
		return nil, 0, err
	}
	noValue := map[string]bool{"-nodefaults": true, "-no-user-config": true, "-nographic": true, "-no-reboot": true}
	out := []string{}
	mem := ""
	for i := 1; i < len(argv); i++ {
		flag := argv[i]
		if noValue[flag] || i+1 >= len(argv) {
			out = append(out, flag)
			continue
		}
		val := argv[i+1]
		i++
		switch {
		case flag == "-name":
			val = "skiff-idle-floor"
		case flag == "-initrd":
			val = initrd
		case flag == "-m":
			mem = val
		case flag == "-object" && strings.HasPrefix(val, "memory-backend-file"):
			continue
		case flag == "-machine":
			val = strings.ReplaceAll(val, ",memory-backend=ram0", "")
		case flag == "-netdev" || flag == "-qmp" || flag == "-pidfile" || flag == "-chardev" || flag == "-serial":
			continue
		case flag == "-device" && strings.HasPrefix(val, "virtio-net"):
			continue
		case flag == "-drive":
			val += ",snapshot=on,file.locking=off" // the machine holds its disks
		}
		out = append(out, flag, val)
	}
	if mem == "" {
		return nil, 0, fmt.Errorf("no -m in the VM's command line")
	}
	out = append(out, "-serial", "null")
	cmd := exec.Command(argv[0], out...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		return nil, 0, fmt.Errorf("%s exited: %v: %s", argv[0], err, stderr.Bytes())
	case <-time.After(2 * time.Second):
	}
	return func() { cmd.Process.Kill(); <-exited }, cmd.Process.Pid, nil
}

// writeSleepInitrd writes a newc cpio holding /init: a static program that blocks forever.
func writeSleepInitrd(path string) error {
	dir, err := os.MkdirTemp("", "skb-floor")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	src := "package main\n\nimport \"syscall\"\n\nfunc main() {\n\tfor {\n\t\tsyscall.Select(0, nil, nil, nil, nil)\n\t}\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module floorinit\n\ngo 1.22\n"), 0o644); err != nil {
		return err
	}
	build := exec.Command("go", "build", "-o", "init", ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build the floor's init: %v: %s", err, out)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "init"))
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	entry := func(ino int, name string, mode int, data []byte) {
		fmt.Fprintf(&buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
		buf.WriteString(name + "\x00")
		for buf.Len()%4 != 0 {
			buf.WriteByte(0)
		}
		buf.Write(data)
		for buf.Len()%4 != 0 {
			buf.WriteByte(0)
		}
	}
	entry(1, "init", 0o100755, bin)
	entry(0, "TRAILER!!!", 0, nil)
	return os.WriteFile(path, buf.Bytes(), 0o644)
}
