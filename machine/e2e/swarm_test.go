//go:build linux

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/machine/machinetest"
)

// TestSwarm puts two machines on one network group (issue 26): each reaches the other by
// name over the group's own network, and Docker's Swarm spans them: a service with a
// replica on each, a second service reaching the first over an overlay network, a
// published port answering on the host, and a node whose machine is stopped and started
// again taking its replica back.
func TestSwarm(t *testing.T) {
	e := machinetest.New(t)
	began := time.Now()
	phase := func(what string) { t.Logf("%6.1fs %s", time.Since(began).Seconds(), what) }
	for _, n := range []string{"a", "b"} {
		e.Must("machine", "init", n, "--cpus", "1", "--memory", "1G", "--disk-size", "4G", "--no-home-share", "--network-group", "g")
	}
	lease := func(n string) string {
		return strings.TrimSpace(e.Must("machine", "inspect", n, "--format", "{{.Spec.GroupLease.Address}}"))
	}
	if la, lb := lease("a"), lease("b"); la == lb || la == "" || lb == "" {
		t.Fatalf("leases: a %q, b %q; want two different addresses", la, lb)
	}
	startBoth(t, e)
	phase("both machines started")

	// The group's network: b by name from a container on a (the swarm below needs the
	// rest of the way between them).
	if out, err := e.DockerRun("a", "run", "--rm", machinetest.TestImage, "busybox", "ping", "-c", "1", "-W", "5", "b.skiff.internal"); err != nil ||
		!strings.Contains(out, lease("b")) {
		t.Fatalf("a pinging b.skiff.internal: %v\n%s", err, out)
	}
	phase("a reaches b by name")
	t.Cleanup(func() {
		// Registered after the machines': runs first, while they are still there.
		if t.Failed() {
			for _, args := range [][]string{{"node", "ls"}, {"service", "ps", "--no-trunc", "web", "probe"}} {
				out, err := e.DockerRun("a", args...)
				t.Logf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
	})

	e.Must("swarm", "init", "a")
	e.Must("swarm", "join", "b", "--manager", "a")
	machinetest.Eventually(t, 3*time.Minute, "two ready nodes", func() bool {
		out, _ := e.DockerRun("a", "node", "ls", "--format", "{{.Hostname}} {{.Status}}")
		return strings.Contains(out, "a Ready") && strings.Contains(out, "b Ready")
	})
	phase("swarm of two nodes")

	port := machinetest.FreePort(t)
	e.MustDocker("a", "network", "create", "--driver", "overlay", "appnet")
	// Each replica serves the name of its node; one replica per node spreads them.
	e.MustDocker("a", "service", "create", "--detach", "--name", "web", "--replicas", "2", "--replicas-max-per-node", "1",
		"--network", "appnet", "--publish", fmt.Sprintf("%d:8080", port), "--env", "NODE={{.Node.Hostname}}", "--no-resolve-image",
		machinetest.TestImage, "sh", "-c", "mkdir -p /www && echo node-$NODE > /www/index.html && exec busybox httpd -f -p 8080 -h /www")
	// The probe reaches web by its service name over the overlay network and prints what it got.
	e.MustDocker("a", "service", "create", "--detach", "--name", "probe", "--network", "appnet", "--no-resolve-image",
		machinetest.TestImage, "sh", "-c", "while true; do busybox wget -qO- http://web:8080/ 2>&1; sleep 2; done")
	running := func(svc string) map[string]bool {
		out, _ := e.DockerRun("a", "service", "ps", svc, "--filter", "desired-state=running", "--format", "{{.Node}} {{.CurrentState}}")
		on := map[string]bool{}
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[1] == "Running" {
				on[f[0]] = true
			}
		}
		return on
	}
	machinetest.Eventually(t, 6*time.Minute, "a replica of web running on each node", func() bool {
		on := running("web")
		return on["a"] && on["b"]
	})
	phase("web runs on both nodes")
	machinetest.Eventually(t, 3*time.Minute, "the probe reaching web over the overlay network", func() bool {
		out, _ := e.DockerRun("a", "service", "logs", "--raw", "probe")
		return strings.Contains(out, "node-a") || strings.Contains(out, "node-b")
	})
	phase("probe reaches web over the overlay")

	// The published port answers on the host, from both replicas (the routing mesh
	// balances over them, one of them across the overlay to the other node).
	seen := func(want ...string) {
		t.Helper()
		got := map[string]bool{}
		machinetest.Eventually(t, 3*time.Minute, fmt.Sprintf("127.0.0.1:%d answering from %v", port, want), func() bool {
			if body := get(port); body != "" {
				got[body] = true
			}
			for _, w := range want {
				if !got[w] {
					return false
				}
			}
			return true
		})
	}
	seen("node-a", "node-b")
	phase("published port answers from both replicas")

	// b's machine goes away: the service keeps answering from a; once b is back, its
	// node is ready again and takes its replica back.
	e.Must("machine", "stop", "--cold", "b")
	phase("b stopped")
	seen("node-a")
	e.Must("machine", "start", "b")
	phase("b started again")
	machinetest.Eventually(t, 6*time.Minute, "web running on both nodes again", func() bool {
		on := running("web")
		return on["a"] && on["b"]
	})
	seen("node-a", "node-b")
	phase("web recovered on b")
}

// startBoth starts the two machines at once: they boot in parallel.
func startBoth(t *testing.T, e *machinetest.Env) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	outs := make([]string, 2)
	for i, n := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = e.Run("machine", "start", n)
		}()
	}
	wg.Wait()
	for i := range errs {
		if errs[i] != nil {
			t.Fatalf("start: %v\n%s", errs[i], outs[i])
		}
	}
	for _, n := range []string{"a", "b"} {
		e.LoadBusybox(n)
	}
}

// get is the body of http://127.0.0.1:port/, trimmed, or "" on any failure.
func get(port int) string {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}
