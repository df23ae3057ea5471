//go:build linux

package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// holdFor is how long TestLongStreams holds its streams: SKIFF_FAULT_HOLD (make
// test-faults uses 10m), 30s by default so that CI runs it too.
func holdFor(t *testing.T) time.Duration {
	if v := os.Getenv("SKIFF_FAULT_HOLD"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SKIFF_FAULT_HOLD: %v", err)
		}
		return d
	}
	t.Logf("holding the streams 30s; make test-faults holds them 10 minutes (SKIFF_FAULT_HOLD=10m)")
	return 30 * time.Second
}

// TestLongStreams holds `docker logs -f` and `docker events` open through the engine
// proxy while a container writes a numbered line and restarts a sibling every second:
// every line and every event must arrive, in order, none dropped or repeated.
func TestLongStreams(t *testing.T) {
	m := machine(t)
	hold := holdFor(t)
	m.MustDocker("default", "run", "-d", "--name", "ticker", img, "sh", "-c", "i=0; while true; do i=$((i+1)); echo tick$i; sleep 1; done")
	defer m.DockerRun("default", "rm", "-f", "ticker")
	m.MustDocker("default", "create", "--name", "blinker", img, "true")
	defer m.DockerRun("default", "rm", "-f", "blinker")

	ctx, cancel := context.WithTimeout(context.Background(), hold+2*time.Minute)
	defer cancel()
	logs := m.DockerCmd(ctx, "default", "logs", "-f", "ticker")
	events := m.DockerCmd(ctx, "default", "events", "--filter", "container=blinker", "--filter", "event=start", "--format", "{{.Action}}")
	lines, eventLines := follow(t, logs), follow(t, events)
	time.Sleep(time.Second) // both streams attached
	starts := 0
	for end := time.Now().Add(hold); time.Now().Before(end); starts++ {
		m.MustDocker("default", "start", "blinker")
		time.Sleep(time.Second)
	}
	// The last start's event and the last lines need a moment to come through.
	time.Sleep(3 * time.Second)
	cancel()
	got, gotEvents := <-lines, <-eventLines

	next := 0
	for _, l := range got {
		n, err := strconv.Atoi(strings.TrimPrefix(l, "tick"))
		if err != nil || !strings.HasPrefix(l, "tick") {
			t.Fatalf("logs -f: a line that is not the ticker's: %q", l)
		}
		if next != 0 && n != next {
			t.Fatalf("logs -f: line %d after line %d: dropped or repeated", n, next-1)
		}
		next = n + 1
	}
	if min := int(hold/time.Second) - 2; len(got) < min {
		t.Fatalf("logs -f delivered %d lines in %s, want at least %d", len(got), hold, min)
	}
	if len(gotEvents) != starts {
		t.Fatalf("events delivered %d starts of %d", len(gotEvents), starts)
	}
	t.Logf("figure: logs -f held %s: %d lines, none dropped; events: %d of %d starts", hold, len(got), len(gotEvents), starts)
}

// follow starts cmd and collects its output lines until it ends.
func follow(t *testing.T, cmd *exec.Cmd) <-chan []string {
	t.Helper()
	out := make(chan []string, 1)
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Args, err)
	}
	go func() {
		var ls []string
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			ls = append(ls, sc.Text())
		}
		cmd.Wait()
		out <- ls
	}()
	return out
}
