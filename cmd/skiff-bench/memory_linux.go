package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/machine/agentapi"
)

// memSample is one reading of a machine's memory, as its agent reports it.
type memSample struct {
	at        time.Duration // since the run began
	hostMiB   uint64        // the VM process's RSS
	targetMiB uint64        // what the balloon leaves the guest (balloon mode)
	phase     string
}

// benchMemory follows the VM process's memory on the host through idle, a 1.2 GB
// workload, its exit and a second one, for each way of returning memory side by side:
// free page reporting (QEMU's default), the balloon policy (vz's only way, driven here
// over QMP) and neither. It prints how much each holds idle, how soon memory is back
// after the workload and whether anything was OOM-killed.
func benchMemory(args []string) error {
	fs := flag.NewFlagSet("memory", flag.ExitOnError)
	image := fs.String("image", "images/out/amd64", "image directory")
	skiff := fs.String("skiff", "bin/skiff", "skiff CLI")
	idle := fs.Duration("idle", 60*time.Second, "idle time before the first workload")
	after := fs.Duration("after", 90*time.Second, "time followed after each workload")
	only := fs.String("modes", "free-page-reporting,balloon,off", "reclaim modes to compare")
	fs.Parse(args)
	b, cleanup, err := newBench(*skiff)
	if err != nil {
		return err
	}
	defer cleanup()
	modes := strings.Split(*only, ",")
	results := map[string]memResult{}
	for _, mode := range modes {
		r, err := b.memoryRun(mode, *image, *idle, *after)
		if err != nil {
			return fmt.Errorf("%s: %w", mode, err)
		}
		results[mode] = r
	}
	fmt.Printf("\nVM process RSS on the host (MiB), 2 GiB machine, 1.2 GB tmpfs workload run twice:\n")
	fmt.Printf("%-20s %8s %8s %10s %10s %10s %12s %6s\n", "reclaim", "idle", "peak", "+30s", "+60s", "+90s", "back after", "OOM")
	for _, mode := range modes {
		r := results[mode]
		back := "never"
		if r.backAfter > 0 {
			back = r.backAfter.Round(time.Second).String()
		}
		fmt.Printf("%-20s %8d %8d %10d %10d %10d %12s %6d\n", mode, r.idleMiB, r.peakMiB, r.at[0], r.at[1], r.at[2], back, r.ooms)
	}
	fmt.Println(`("back after": from the first workload's exit until RSS is within 300 MiB of idle)`)
	return nil
}

type memResult struct {
	idleMiB, peakMiB uint64
	at               [3]uint64 // RSS 30, 60 and 90 s after the first workload exited
	backAfter        time.Duration
	ooms             int
}

// memoryRun is one machine through the workload, sampled every 2 s.
func (b *bench) memoryRun(mode, image string, idle, after time.Duration) (memResult, error) {
	name := "mem-" + strings.SplitN(mode, "-", 2)[0]
	d, rm, err := b.startMachine(name, image, "2G", "--memory-reclaim", mode)
	if err != nil {
		return memResult{}, err
	}
	defer rm()
	ctx := context.Background()
	if err := loadSink(ctx, d); err != nil {
		return memResult{}, err
	}
	began := time.Now()
	var samples []memSample
	phase := "idle"
	sample := func() {
		st, err := agentapi.NewClient(d.Sock(machine.SockControl)).State(ctx)
		if err != nil || st.Memory == nil {
			return
		}
		samples = append(samples, memSample{at: time.Since(began), hostMiB: st.Memory.HostBytes >> 20, targetMiB: st.Memory.TargetBytes >> 20, phase: phase})
	}
	follow := func(d time.Duration) {
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(2 * time.Second) {
			sample()
		}
	}
	follow(idle)
	var res memResult
	if n := len(samples); n > 0 {
		res.idleMiB = samples[n-1].hostMiB
	}
	var exited time.Duration
	for round := 1; round <= 2; round++ {
		phase = fmt.Sprintf("workload %d", round)
		done := make(chan error, 1)
		go func() {
			_, err := docker(ctx, d, nil, "run", "--rm", "--tmpfs", "/big:size=1300m", sinkImage, "/skiff-bench", "memory-fill", "/big/fill", "1200", "3s")
			done <- err
		}()
		for waiting := true; waiting; {
			select {
			case err := <-done:
				if err != nil {
					fmt.Printf("  %s: workload %d failed: %v\n", mode, round, err)
				}
				waiting = false
			case <-time.After(2 * time.Second):
				sample()
			}
		}
		if round == 1 {
			exited = time.Since(began)
		}
		phase = fmt.Sprintf("after %d", round)
		follow(after)
	}
	for _, s := range samples {
		res.peakMiB = max(res.peakMiB, s.hostMiB)
		if s.phase == "after 1" {
			since := s.at - exited
			for i, mark := range []time.Duration{30 * time.Second, 60 * time.Second, 90 * time.Second} {
				if since <= mark {
					res.at[i] = s.hostMiB
				}
			}
			if res.backAfter == 0 && s.hostMiB <= res.idleMiB+300 {
				res.backAfter = since
			}
		}
	}
	// The agent's account of what the policy did, kept past the machine.
	if log, err := os.ReadFile(d.File(machine.FileAgentLog)); err == nil {
		p := filepath.Join(os.TempDir(), "skiff-bench-memory-"+mode+".log")
		if os.WriteFile(p, log, 0o644) == nil {
			fmt.Printf("  %s: agent log in %s\n", mode, p)
		}
	}
	out, _ := b.command(nil, "machine", "ssh", name, "--", "dmesg | grep -ci -e 'out of memory' -e oom-kill || true").Output()
	res.ooms, _ = strconv.Atoi(strings.TrimSpace(string(out)))
	f, err := os.Create(filepath.Join(os.TempDir(), "skiff-bench-memory-"+mode+".tsv"))
	if err == nil {
		fmt.Fprintln(f, "seconds\tphase\thost_rss_mib\tballoon_target_mib")
		for _, s := range samples {
			fmt.Fprintf(f, "%.0f\t%s\t%d\t%d\n", s.at.Seconds(), s.phase, s.hostMiB, s.targetMiB)
		}
		f.Close()
		fmt.Printf("  %s: samples in %s\n", mode, f.Name())
	}
	return res, nil
}

// benchMemoryFill is the workload in the container: it writes MiB mebibytes to PATH (on
// a tmpfs, so the guest must hold them), keeps them for a while and exits.
func benchMemoryFill(args []string) error {
	if len(args) != 3 {
		return errors.New("usage: skiff-bench memory-fill PATH MIB HOLD")
	}
	n, err := strconv.Atoi(args[1])
	if err != nil {
		return err
	}
	hold, err := time.ParseDuration(args[2])
	if err != nil {
		return err
	}
	f, err := os.Create(args[0])
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i) // not zero pages: each must be real memory
	}
	for range n {
		if _, err := f.Write(buf); err != nil {
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	time.Sleep(hold)
	fmt.Printf("filled %d MiB\n", n)
	return nil
}
