package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/skiff-dev/skiff/machine"
)

// benchWarm times `skiff machine start` until the engine first answers GET /_ping, for a
// cold boot and for a warm start (resume from the saved state) of the same machine,
// alternating so that load drift hits both alike.
func benchWarm(args []string) error {
	fs := flag.NewFlagSet("warm", flag.ExitOnError)
	image := fs.String("image", "images/out/amd64", "image directory")
	runs := fs.Int("runs", 3, "measured starts of each kind")
	skiff := fs.String("skiff", "bin/skiff", "skiff CLI")
	memory := fs.String("memory", "2G", "machine memory")
	fs.Parse(args)

	b, cleanup, err := newBench(*skiff)
	if err != nil {
		return err
	}
	defer cleanup()
	const name = "warm"
	if err := b.run(nil, "machine", "init", name, "--image", *image, "--memory", *memory, "--disk-size", "8G", "--no-home-share"); err != nil {
		return err
	}
	defer b.run(nil, "machine", "rm", "-f", name)
	d := machine.Home{Root: b.home}.Dir(name)
	// The first boot formats the data disk; it is not counted.
	if _, err := b.timeStart(d); err != nil {
		return err
	}
	results := map[bool][]time.Duration{}
	for i := 0; i < *runs; i++ {
		for _, warm := range []bool{true, false} {
			stop := []string{"machine", "stop", name}
			if !warm {
				stop = []string{"machine", "stop", "--cold", name}
			}
			if err := b.run(nil, stop...); err != nil {
				return err
			}
			size := ""
			if info := d.SavedStateInfo(); info != nil {
				size = fmt.Sprintf("(saved state %d MiB)", info.SizeBytes>>20)
			}
			if warm && size == "" {
				return fmt.Errorf("stop did not suspend the machine (see %s)", d.File(machine.FileAgentLog))
			}
			took, err := b.timeStart(d)
			if err != nil {
				return err
			}
			results[warm] = append(results[warm], took)
			fmt.Printf("start %-4s run %d: %6.2fs %s\n", kind(warm), i+1, took.Seconds(), size)
		}
	}
	w, c := median(results[true]), median(results[false])
	fmt.Printf("\n`skiff machine start` -> engine GET /_ping OK, median of %d:\n", *runs)
	fmt.Printf("  warm (resume): %6.2fs\n  cold (boot):   %6.2fs\n  ratio warm/cold: %.3f (goal: warm <= 2s)\n", w.Seconds(), c.Seconds(), w.Seconds()/c.Seconds())
	return nil
}

func kind(warm bool) string {
	if warm {
		return "warm"
	}
	return "cold"
}

// timeStart runs `skiff machine start` and returns the time from the command's launch to
// the first successful GET /_ping through the machine's engine socket.
func (b *bench) timeStart(d machine.Dir) (time.Duration, error) {
	began := time.Now()
	done := make(chan error, 1)
	go func() { done <- b.run(nil, "machine", "start", d.Name) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	pinged, err := firstPing(ctx, d.EngineEndpoint(), done)
	if err != nil {
		return 0, err
	}
	if err := <-done; err != nil {
		return 0, err
	}
	return pinged.Sub(began), nil
}

// firstPing polls the engine socket until GET /_ping answers 200 and returns when; it
// gives up early if the start command (done) fails.
func firstPing(ctx context.Context, sock string, done chan error) (time.Time, error) {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dd net.Dialer
			return dd.DialContext(ctx, "unix", sock)
		}}}
	for {
		if resp, err := client.Get("http://engine/_ping"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Now(), nil
			}
		}
		select {
		case err := <-done:
			if err != nil {
				return time.Time{}, err
			}
			done <- nil
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("%s: the engine never answered", sock)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
