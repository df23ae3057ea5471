// Command skiff-bench measures Skiff against its peers, each pair side by side in one run
// on the same machine, and prints both medians and their ratio. Timings are noisy here;
// ratios from one run are what to compare.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/machine/agentapi"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: skiff-bench boot|backends|idle|api|build|ports|shares|vsock|fsevents|memory [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "boot":
		err = benchBoot(os.Args[2:])
	case "backends":
		err = benchBackends(os.Args[2:])
	case "api":
		err = benchAPI(os.Args[2:])
	case "build":
		err = benchBuild(os.Args[2:])
	case "shares":
		err = benchShares(os.Args[2:])
	case "ports":
		err = benchPorts(os.Args[2:])
	case "warm":
		err = benchWarm(os.Args[2:])
	case "idle":
		err = benchIdle(os.Args[2:])
	case "vsock":
		err = benchVsock(os.Args[2:])
	case "memory":
		err = benchMemory(os.Args[2:])
	case "memory-fill": // the workload in a container of memory
		err = benchMemoryFill(os.Args[2:])
	case "fsevents":
		err = benchFileEvents(os.Args[2:])
	case "fsevents-watch": // the watcher in a container of fsevents
		err = benchFileEventsWatch(os.Args[2:])
	case "vsock-guest": // the guest's half of vsock, run by it in the VM
		err = benchVsockGuest(os.Args[2:])
	case "vsock-source":
		err = benchVsockSource(os.Args[2:])
	default:
		err = fmt.Errorf("unknown benchmark %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "skiff-bench: %v\n", err)
		os.Exit(1)
	}
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// bench is a throwaway Skiff home with the CLI.
type bench struct {
	skiff string
	home  string
}

// command is a skiff command in the bench's home.
func (b *bench) command(env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(b.skiff, args...)
	cmd.Env = append(os.Environ(), append(env, "SKIFF_HOME="+b.home, "DOCKER_CONFIG="+filepath.Join(b.home, "docker"))...)
	return cmd
}

func (b *bench) run(env []string, args ...string) error {
	out, err := b.command(env, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("skiff %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// newBench makes a throwaway home for the CLI at path skiff.
func newBench(skiff string) (*bench, func(), error) {
	home, err := os.MkdirTemp("", "skb")
	if err != nil {
		return nil, nil, err
	}
	abs, _ := filepath.Abs(skiff)
	return &bench{skiff: abs, home: home}, func() { os.RemoveAll(home) }, nil
}

// startMachine creates and starts a machine; the returned func removes it.
func (b *bench) startMachine(name, image, memory string, initArgs ...string) (machine.Dir, func(), error) {
	d := machine.Home{Root: b.home}.Dir(name)
	if err := b.run(nil, append([]string{"machine", "init", name, "--image", image, "--memory", memory, "--disk-size", "4G", "--no-home-share"}, initArgs...)...); err != nil {
		return d, nil, err
	}
	rm := func() { b.run(nil, "machine", "rm", "-f", name) }
	if err := b.run(nil, "machine", "start", name); err != nil {
		rm()
		return d, nil, err
	}
	return d, rm, nil
}

// timeBoot starts a machine and returns the time from the VM's launch to the first GET
// /_ping that succeeds through the host's engine socket.
func (b *bench) timeBoot(name string, env []string) (time.Duration, error) {
	h := machine.Home{Root: b.home}
	d := h.Dir(name)
	done := make(chan error, 1)
	go func() { done <- b.run(env, "machine", "start", name) }()
	sock := d.EngineEndpoint()
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dd net.Dialer
			return dd.DialContext(ctx, "unix", sock)
		}}}
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		resp, err := client.Get("http://engine/_ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				pinged := time.Now()
				st, err := agentapi.NewClient(d.Sock(machine.SockControl)).State(context.Background())
				if err != nil || st.VMStartedAt == nil {
					return 0, fmt.Errorf("agent state: %v", err)
				}
				if err := <-done; err != nil {
					return 0, err
				}
				if st.ReadyAt != nil {
					fmt.Printf("  %s: engine answered at guest uptime %.2fs; host told %.2fs after launch, first ping %dms later\n", name,
						float64(st.GuestBootMS)/1000, st.ReadyAt.Sub(*st.VMStartedAt).Seconds(), pinged.Sub(*st.ReadyAt).Milliseconds())
				}
				return pinged.Sub(*st.VMStartedAt), nil
			}
		}
		select {
		case err := <-done:
			if err != nil {
				return 0, err
			}
			done <- nil
		default:
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, fmt.Errorf("%s: engine never answered", name)
}

// bootVariant is one kind of machine whose boots are timed.
type bootVariant struct {
	name, image string
	env         []string // for its starts
	initArgs    []string // beyond the image and the shape
}

// interleavedBoots makes one machine per variant and times runs cold boots of each, after
// one warm-up boot each (which formats the data disk); it returns the measured boots.
func (b *bench) interleavedBoots(variants []bootVariant, cpus, runs int) (map[string][]time.Duration, error) {
	for _, v := range variants {
		if err := b.run(nil, append([]string{"machine", "init", v.name, "--image", v.image, "--cpus", fmt.Sprint(cpus), "--memory", "2G", "--disk-size", "8G", "--no-home-share"}, v.initArgs...)...); err != nil {
			return nil, err
		}
		defer b.run(nil, "machine", "rm", "-f", v.name)
	}
	results := map[string][]time.Duration{}
	// Interleaved, so that drift in the machine's load hits every variant alike.
	for i := 0; i <= runs; i++ {
		for _, v := range variants {
			d, err := b.timeBoot(v.name, v.env)
			if err != nil {
				return nil, err
			}
			if err := b.run(nil, "machine", "stop", "--cold", v.name); err != nil {
				return nil, err
			}
			label := "measured"
			if i == 0 {
				label = "warm-up (formats the data disk), not counted"
			} else {
				results[v.name] = append(results[v.name], d)
			}
			fmt.Printf("boot %-8s run %d: %6.2fs  %s\n", v.name, i, d.Seconds(), label)
		}
	}
	return results, nil
}

// bootFlags are the flags of the interleaved-boot benchmarks beside their variants.
type bootFlags struct {
	skiff      *string
	runs, cpus *int
}

func newBootFlags(fs *flag.FlagSet) bootFlags {
	return bootFlags{
		runs:  fs.Int("runs", 3, "measured boots per variant (after one warm-up boot each)"),
		skiff: fs.String("skiff", "bin/skiff", "skiff CLI"),
		cpus:  fs.Int("cpus", 2, "CPUs per VM"),
	}
}

// boots times the variants' boots, interleaved, with the CLI and shape the flags name.
func (f bootFlags) boots(variants []bootVariant) (map[string][]time.Duration, error) {
	b, cleanup, err := newBench(*f.skiff)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	return b.interleavedBoots(variants, *f.cpus, *f.runs)
}

func benchBoot(args []string) error {
	fs := flag.NewFlagSet("boot", flag.ExitOnError)
	minimal := fs.String("minimal", "images/out/amd64", "minimal image directory")
	systemd := fs.String("systemd", "images/out/amd64-systemd", "systemd image directory")
	bf := newBootFlags(fs)
	fs.Parse(args)
	results, err := bf.boots([]bootVariant{
		{name: "minimal", image: *minimal},
		{name: "systemd", image: *systemd, env: []string{"SKIFF_KERNEL_ARGS=skiff.init=systemd"}},
	})
	if err != nil {
		return err
	}
	mMin, mSys := median(results["minimal"]), median(results["systemd"])
	fmt.Printf("\nQEMU launch -> engine GET /_ping OK, median of %d:\n", *bf.runs)
	fmt.Printf("  minimal init: %6.2fs\n  systemd init: %6.2fs\n  ratio minimal/systemd: %.2f (goal <= 0.30, issue 25)\n", mMin.Seconds(), mSys.Seconds(), mMin.Seconds()/mSys.Seconds())
	return nil
}
