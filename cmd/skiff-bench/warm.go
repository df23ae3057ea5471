package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/skiff-dev/skiff/forward"
	"github.com/skiff-dev/skiff/machine"
)

// benchWarm times `skiff machine start` for a cold boot and for a warm start (resume from
// the saved state) of the same machine, alternating so that load drift hits both alike:
// until the command returns, until the engine first answers GET /_ping, and until a
// published port of a running container answers.
func benchWarm(args []string) error {
	fs := flag.NewFlagSet("warm", flag.ExitOnError)
	image := fs.String("image", "images/out/amd64", "image directory")
	runs := fs.Int("runs", 3, "measured starts of each kind")
	skiff := fs.String("skiff", "bin/skiff", "skiff CLI")
	memory := fs.String("memory", "2G", "machine memory")
	shareType := fs.String("share-type", "", "give the machine a shared folder of this type (a resume mounts it again)")
	fs.Parse(args)

	b, cleanup, err := newBench(*skiff)
	if err != nil {
		return err
	}
	defer cleanup()
	const name = "warm"
	initArgs := []string{"machine", "init", name, "--image", *image, "--memory", *memory, "--disk-size", "8G", "--no-home-share"}
	if *shareType != "" {
		// Outside the bench's Skiff home, which is never shared.
		dir, err := os.MkdirTemp("", "skb-warm")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		initArgs = append(initArgs, "--mount", dir+":/mnt/warm", "--share-type", *shareType)
	}
	if err := b.run(nil, initArgs...); err != nil {
		return err
	}
	defer b.run(nil, "machine", "rm", "-f", name)
	d := machine.Home{Root: b.home}.Dir(name)
	// The first boot formats the data disk; it is not counted.
	if _, err := b.timeStart(d, ""); err != nil {
		return err
	}
	// A container that publishes a port and comes back after a cold boot too.
	port, _, _, err := freePorts()
	if err != nil {
		return err
	}
	ctx := context.Background()
	if err := loadSink(ctx, d); err != nil {
		return err
	}
	if _, err := docker(ctx, d, nil, "run", "-d", "--restart", "always", "-p", fmt.Sprintf("127.0.0.1:%d:80", port), sinkImage, "/skiff-bench", "ports", "-sink", ":80"); err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	results := map[bool][]startTimes{}
	// Where each warm start went, as the host agent tells it (inspect's boot steps).
	var stepNames []string
	stepTimes := map[string][]time.Duration{}
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
			t, err := b.timeStart(d, addr)
			if err != nil {
				return err
			}
			results[warm] = append(results[warm], t)
			fmt.Printf("start %-4s run %d: returned %5.2fs, engine %5.2fs, port %5.2fs %s\n", kind(warm), i+1,
				t.returned.Seconds(), t.engine.Seconds(), t.port.Seconds(), size)
			if warm {
				steps, err := b.bootSteps(name)
				if err != nil {
					return err
				}
				fmt.Printf("  %s\n", forward.StepsText(steps))
				for _, s := range steps {
					if !slices.Contains(stepNames, s.Name) {
						stepNames = append(stepNames, s.Name)
					}
					stepTimes[s.Name] = append(stepTimes[s.Name], s.Duration())
				}
			}
		}
	}
	fmt.Printf("\n`skiff machine start`, seconds from its launch, median of %d:\n", *runs)
	fmt.Printf("  %-14s %8s %8s %8s\n", "", "returned", "engine", "port")
	med := map[bool]startTimes{true: medianTimes(results[true]), false: medianTimes(results[false])}
	for _, warm := range []bool{true, false} {
		label, t := "cold (boot)", med[warm]
		if warm {
			label = "warm (resume)"
		}
		fmt.Printf("  %-14s %8.2f %8.2f %8.2f\n", label, t.returned.Seconds(), t.engine.Seconds(), t.port.Seconds())
	}
	fmt.Printf("  ratio warm/cold (engine): %.3f; goals: warm returned <= 0.5 s, port <= 0.7 s\n",
		med[true].engine.Seconds()/med[false].engine.Seconds())
	medSteps := make([]forward.Step, len(stepNames))
	for i, n := range stepNames {
		medSteps[i] = forward.Step{Name: n, Micros: median(stepTimes[n]).Microseconds()}
	}
	fmt.Printf("  warm start, median of each step (the guest's run side by side): %s\n", forward.StepsText(medSteps))
	return nil
}

// bootSteps is where the machine's last start went, from inspect.
func (b *bench) bootSteps(name string) ([]forward.Step, error) {
	out, err := b.command(nil, "machine", "inspect", name, "--format", "{{json .Status.Agent.Boot.Steps}}").Output()
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", name, err)
	}
	var steps []forward.Step
	if err := json.Unmarshal(out, &steps); err != nil || len(steps) == 0 {
		return nil, fmt.Errorf("inspect %s: no steps of the warm start in %q: %v", name, out, err)
	}
	return steps, nil
}

func kind(warm bool) string {
	if warm {
		return "warm"
	}
	return "cold"
}

// startTimes are one start's milestones, each from the command's launch.
type startTimes struct {
	returned, engine, port time.Duration
}

// medianTimes is each milestone's median over ts.
func medianTimes(ts []startTimes) startTimes {
	var r, e, p []time.Duration
	for _, t := range ts {
		r, e, p = append(r, t.returned), append(e, t.engine), append(p, t.port)
	}
	return startTimes{returned: median(r), engine: median(e), port: median(p)}
}

// timeStart runs `skiff machine start` and times it: until it returns, until the first
// successful GET /_ping through the machine's engine socket, and, with port set, until
// the container publishing it answers there.
func (b *bench) timeStart(d machine.Dir, port string) (startTimes, error) {
	var t startTimes
	began := time.Now()
	done := make(chan error, 1)
	go func() {
		err := b.run(nil, "machine", "start", d.Name)
		t.returned = time.Since(began)
		done <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	answered := make(chan error, 1)
	if port != "" {
		go func() {
			for ctx.Err() == nil {
				if sinkAnswers(port) == nil {
					t.port = time.Since(began)
					answered <- nil
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
			answered <- fmt.Errorf("port %s never answered", port)
		}()
	} else {
		answered <- nil
	}
	pinged, err := firstPing(ctx, d.EngineEndpoint(), done)
	if err != nil {
		return startTimes{}, err
	}
	t.engine = pinged.Sub(began)
	if err := <-done; err != nil {
		return startTimes{}, err
	}
	return t, <-answered
}

// sinkAnswers sends one byte to the byte sink (serveSink) at addr and wants it counted.
func sinkAnswers(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte{1}); err != nil {
		return err
	}
	c.(*net.TCPConn).CloseWrite()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "1" {
		return fmt.Errorf("sink at %s answered %q: %v", addr, line, err)
	}
	return nil
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
