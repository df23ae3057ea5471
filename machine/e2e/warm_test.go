//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/forward"
	"github.com/skiff-dev/skiff/machine/machinetest"
)

// bootInfo is what inspect says about how the machine came up and what it has saved.
type bootInfo struct {
	Status struct {
		State string `json:"state"`
		Agent *struct {
			Boot *struct {
				Warm   bool           `json:"warm"`
				Reason string         `json:"reason"`
				Steps  []forward.Step `json:"steps"`
			} `json:"boot"`
		} `json:"agent"`
	} `json:"status"`
	SavedState *struct {
		SizeBytes int64 `json:"sizeBytes"`
	} `json:"savedState"`
}

func inspectBoot(t *testing.T, e *machinetest.Env) bootInfo {
	t.Helper()
	var v bootInfo
	if err := json.Unmarshal([]byte(e.Must("machine", "inspect", "--format", "json")), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func (b bootInfo) warm() (bool, string) {
	if b.Status.Agent == nil || b.Status.Agent.Boot == nil {
		return false, ""
	}
	return b.Status.Agent.Boot.Warm, b.Status.Agent.Boot.Reason
}

// TestWarmStart runs a container through stop (suspend) -> start (warm) -> stop --cold ->
// start (cold), checking its data and a named volume at each step and the guest clock
// right after a warm start that follows a stop; then the safety case: a data disk changed
// behind Skiff's back while suspended makes the next start boot cold, say why, and the
// filesystem is clean.
func TestWarmStart(t *testing.T) {
	e := machinetest.New(t)
	shared := t.TempDir()
	e.Must("machine", "init", "--cpus", "2", "--memory", "1G", "--disk-size", "6G", "--no-home-share", "--mount", shared+":/mnt/shared")
	e.Must("machine", "start")
	e.LoadBusybox("default")
	e.MustDocker("default", "run", "-d", "--name", "worker", "-v", "warmvol:/data", machinetest.TestImage,
		"sh", "-c", "echo layer > /in-layer; echo volume > /data/f; sleep 1000000")
	port := machinetest.FreePort(t)
	e.MustDocker("default", "run", "-d", "--name", "echo", "-p", fmt.Sprintf("127.0.0.1:%d:7", port), machinetest.TestImage, "echod", "-tcp", ":7")
	echoes := func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 2*time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintln(c, "ping")
		line, err := bufio.NewReader(c).ReadString('\n')
		return err == nil && line == "ping\n"
	}
	machinetest.Eventually(t, 30*time.Second, "the published port to echo", echoes)
	// A long-lived API stream must end for its client when the machine stops, not hang.
	events := e.DockerCmd(context.Background(), "default", "events")
	if err := events.Start(); err != nil {
		t.Fatal(err)
	}
	eventsDone := make(chan error, 1)
	go func() { eventsDone <- events.Wait() }()
	startedAt := func() string {
		return strings.TrimSpace(e.MustDocker("default", "inspect", "-f", "{{.State.StartedAt}}", "worker"))
	}
	firstStart := startedAt()
	checkData := func(when string) {
		t.Helper()
		if out := e.MustDocker("default", "run", "--rm", "-v", "warmvol:/data", machinetest.TestImage, "cat", "/data/f"); strings.TrimSpace(out) != "volume" {
			t.Fatalf("%s: the named volume holds %q", when, out)
		}
		if out := e.MustDocker("default", "exec", "worker", "cat", "/in-layer"); strings.TrimSpace(out) != "layer" {
			t.Fatalf("%s: the container's own file holds %q", when, out)
		}
	}

	// Suspend: the state is saved and shown, then resumed with the container still running.
	out := e.Must("machine", "stop")
	if !strings.Contains(out, "suspended") {
		t.Fatalf("stop did not suspend: %s", out)
	}
	if v := inspectBoot(t, e); v.Status.State != "stopped" || v.SavedState == nil || v.SavedState.SizeBytes <= 0 {
		t.Fatalf("inspect of a suspended machine: %+v", v)
	}
	select {
	case err := <-eventsDone:
		t.Logf("docker events ended with the suspend: %v", err)
	case <-time.After(30 * time.Second):
		events.Process.Kill()
		t.Fatal("docker events still hangs 30s after the machine was suspended")
	}
	// A stop long enough that an unsynced guest clock would be visibly wrong.
	time.Sleep(20 * time.Second)
	out = e.Must("machine", "start")
	before := time.Now()
	guest := e.MustDocker("default", "exec", "worker", "date", "+%s")
	after := time.Now()
	g, err := strconv.ParseInt(strings.TrimSpace(guest), 10, 64)
	if err != nil {
		t.Fatalf("guest date: %q", guest)
	}
	// The guest read its clock between before and after; allow 1s either side.
	if g < before.Unix()-1 || g > after.Unix()+1 {
		t.Fatalf("guest clock right after a warm start: %d, host between %d and %d", g, before.Unix(), after.Unix())
	}
	v := inspectBoot(t, e)
	if warm, why := v.warm(); !warm {
		t.Fatalf("start after a suspend booted cold (%s): %s", why, out)
	}
	if v.SavedState != nil {
		t.Fatal("the saved state is still there after it was resumed")
	}
	// inspect tells where the warm start went (skiff-bench warm prints it).
	steps := map[string]time.Duration{}
	for _, s := range v.Status.Agent.Boot.Steps {
		steps[s.Name] = s.Duration()
	}
	if steps["restore"] <= 0 || steps["engine answer"] <= 0 || len(steps) != 4 {
		t.Errorf("inspect's steps of the warm start: %+v; want the restore, the guest's two and the stream", v.Status.Agent.Boot.Steps)
	}
	if s := startedAt(); s != firstStart {
		t.Fatalf("the container restarted across the warm start (%s -> %s)", firstStart, s)
	}
	checkData("after a warm start")
	machinetest.Eventually(t, 10*time.Second, "the published port to echo again after the warm start", echoes)

	// Cold: stop --cold shuts down; the next start boots and the data is still there.
	out = e.Must("machine", "stop", "--cold")
	if strings.Contains(out, "suspended") || inspectBoot(t, e).SavedState != nil {
		t.Fatalf("stop --cold left a saved state: %s", out)
	}
	e.Must("machine", "start")
	if warm, why := inspectBoot(t, e).warm(); warm || why != "" {
		t.Fatalf("start after stop --cold: warm=%v reason=%q", warm, why)
	}
	e.MustDocker("default", "start", "worker")
	checkData("after a cold start")

	// Safety: change the data disk while suspended; the saved state must not be used.
	e.Must("machine", "stop")
	disk := filepath.Join(e.Home, "machines", "default", "data.img")
	if out, err := exec.Command("debugfs", "-w", "-R", "write /etc/hostname skiff-tampered", disk).CombinedOutput(); err != nil {
		t.Fatalf("debugfs: %v\n%s", err, out)
	}
	out = e.Must("machine", "start")
	warm, why := inspectBoot(t, e).warm()
	if warm || !strings.Contains(why, "data.img") {
		t.Fatalf("start after the disk changed: warm=%v reason=%q\n%s", warm, why, out)
	}
	if !strings.Contains(out, why) {
		t.Errorf("start did not tell the user why it booted cold: %s", out)
	}
	if log, _ := os.ReadFile(filepath.Join(e.Home, "machines", "default", "agent.log")); !strings.Contains(string(log), why) {
		t.Errorf("the agent log does not say why it booted cold (%s)", why)
	}
	// The change made outside is there, and so is everything the engine wrote.
	e.Must("machine", "ssh", "--", "test -f /var/lib/skiff/skiff-tampered")
	e.MustDocker("default", "start", "worker")
	checkData("after a cold boot that refused the saved state")

	// A share in use by a container cannot be detached from the VM: stop shuts down
	// instead, says why (naming the container), and keeps nothing half-saved.
	e.MustDocker("default", "run", "-d", "--name", "binder", "-v", shared+":/src", machinetest.TestImage, "sleep", "1000000")
	out = e.Must("machine", "stop")
	if !strings.Contains(out, "Could not suspend") || !strings.Contains(out, "container binder (") || inspectBoot(t, e).SavedState != nil {
		t.Fatalf("stop with a share in use: %s", out)
	}
	if out, err := exec.Command("e2fsck", "-fn", disk).CombinedOutput(); err != nil {
		t.Fatalf("the data disk is not clean: %v\n%s", err, out)
	}
}
