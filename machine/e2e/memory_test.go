//go:build linux

package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/machine/machinetest"
)

// TestMemoryBalloon drives the balloon policy vz machines depend on, on QEMU with free
// page reporting off (--memory-reclaim balloon): the host sets the balloon from the
// guest's reports, as it must on vz. An idle machine gives memory back; a 1.2 GB workload
// gets what it needs without an OOM kill while the balloon is inflated; after it exits
// the VM process's memory on the host falls again; a second workload gets it back.
func TestMemoryBalloon(t *testing.T) {
	e := machinetest.New(t)
	e.Must("machine", "init", "--cpus", "2", "--memory", "2G", "--memory-reclaim", "balloon", "--no-home-share")
	e.Must("machine", "start")
	e.LoadBusybox("default")
	mem := func() machineMemory {
		t.Helper()
		var v machine.View
		if err := json.Unmarshal([]byte(e.Must("machine", "inspect", "--format", "json")), &v); err != nil {
			t.Fatal(err)
		}
		if v.Status.Agent == nil || v.Status.Agent.Memory == nil {
			t.Fatalf("inspect shows no memory: %+v", v.Status)
		}
		m := v.Status.Agent.Memory
		return machineMemory{Reclaim: m.Reclaim, HostMiB: m.HostBytes >> 20, TargetMiB: m.TargetBytes >> 20, BalloonMiB: m.BalloonBytes >> 20,
			UsedMiB: m.GuestUsedBytes >> 20, Moves: m.BalloonMoves}
	}
	if m := mem(); m.Reclaim != "balloon" {
		t.Fatalf("reclaim %q, want balloon", m.Reclaim)
	}
	began := time.Now()
	var idle machineMemory
	machinetest.Eventually(t, 3*time.Minute, "the idle machine's balloon to hold memory back", func() bool {
		idle = mem()
		return idle.BalloonMiB >= 512
	})
	t.Logf("idle after %s: %+v", time.Since(began).Round(time.Second), idle)

	workload := func(round int) {
		t.Helper()
		// tmpfs pages cannot be dropped: the guest must really have the memory.
		out, err := e.DockerRun("default", "run", "--rm", "--tmpfs", "/big:size=1300m", machinetest.TestImage,
			"sh", "-c", "head -c 1200m /dev/zero > /big/fill && sleep 2 && echo filled $(du -m /big/fill | cut -f1)")
		if err != nil || !strings.Contains(out, "filled 1200") {
			e.DumpLogs()
			t.Fatalf("workload %d: %q, %v", round, out, err)
		}
		if oom := e.Must("machine", "ssh", "--", "dmesg | grep -ci -e 'out of memory' -e oom-kill || true"); strings.TrimSpace(oom) != "0" {
			t.Fatalf("workload %d: the guest's kernel OOM-killed something:\n%s", round, e.Must("machine", "ssh", "--", "dmesg | tail -40"))
		}
	}
	workload(1)
	busy := mem()
	t.Logf("after workload 1: %+v", busy)
	if busy.TargetMiB < 1500 {
		t.Fatalf("the balloon did not give the workload memory: %+v", busy)
	}
	began = time.Now()
	var after machineMemory
	machinetest.Eventually(t, 4*time.Minute, "the VM's memory on the host to fall after the workload", func() bool {
		after = mem()
		return after.BalloonMiB >= 512 && after.HostMiB+400 < busy.HostMiB
	})
	t.Logf("%s after workload 1 exited: %+v (host RSS %d -> %d MiB)", time.Since(began).Round(time.Second), after, busy.HostMiB, after.HostMiB)
	workload(2)
	t.Logf("after workload 2: %+v", mem())
}

// machineMemory is the part of inspect's memory the test follows, in MiB.
type machineMemory struct {
	Reclaim                                 string
	HostMiB, TargetMiB, BalloonMiB, UsedMiB uint64
	Moves                                   int
}
