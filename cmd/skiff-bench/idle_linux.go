package main

import (
	"flag"
	"fmt"
	"os"
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

// benchIdle reports the host agent's RSS and CPU use while its machine idles, QEMU excluded.
func benchIdle(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	image := fs.String("image", "images/out/amd64", "image directory")
	skiff := fs.String("skiff", "bin/skiff", "skiff CLI")
	secs := fs.Int("seconds", 60, "idle window")
	fs.Parse(args)
	b, cleanup, err := newBench(*skiff)
	if err != nil {
		return err
	}
	defer cleanup()
	d, rm, err := b.startMachine("idle", *image, "1G")
	if err != nil {
		return err
	}
	defer rm()
	pb, err := os.ReadFile(d.File(machine.FileAgentPID))
	if err != nil {
		return err
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pb)))
	time.Sleep(10 * time.Second) // let start-up work (first trim, first time sync) pass
	c0, err := procCPU(pid)
	if err != nil {
		return err
	}
	t0 := time.Now()
	var peak int64
	for time.Since(t0) < time.Duration(*secs)*time.Second {
		if rss, err := procRSS(pid); err == nil && rss > peak {
			peak = rss
		}
		time.Sleep(time.Second)
	}
	c1, _ := procCPU(pid)
	wall := time.Since(t0)
	pct := 100 * (c1 - c0).Seconds() / wall.Seconds()
	fmt.Printf("host agent idle over %s (QEMU excluded): peak RSS %.1f MB, CPU %.3f%% (goals: <= 30 MB, <= 0.2%%)\n",
		wall.Round(time.Second), float64(peak)/1e6, pct)
	return nil
}
