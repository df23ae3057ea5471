package hostagent

import (
	"testing"
	"time"

	"github.com/skiff-dev/skiff/forward"
)

const mib = 1 << 20

// report is a guest with total MiB of which used cannot be dropped.
func report(totalMiB, usedMiB int64) forward.MemoryReport {
	return forward.MemoryReport{TotalKiB: totalMiB << 10, AvailableKiB: (totalMiB - usedMiB) << 10}
}

// An idle 4 GiB guest using 600 MiB gives back all but its use and the headroom (1 GiB,
// a quarter of the machine), in 512 MiB steps once it has been calm; a workload that grows
// gets memory at once, and pressure gets all of it back.
func TestMemPolicy(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := newMemPolicy(4096*mib, 0, t0)
	if got, ok := p.next(report(4096, 600), t0.Add(time.Second)); ok {
		t.Fatalf("shrank to %d MiB before the guest was calm", got/mib)
	}
	now := t0.Add(memCalm)
	var steps []uint64
	for i := 0; i < 10; i++ {
		r := report(int64(p.target/mib), 600)
		if _, more := p.shrinkAfter(r, now); !more {
			break
		}
		tgt, ok := p.next(r, now)
		if !ok {
			t.Fatalf("step %d: shrinkAfter promised a shrink that next did not make", i)
		}
		steps = append(steps, tgt/mib)
		// The next step waits for the guest's answer to this one.
		if _, ok := p.next(report(int64(tgt/mib), 600), now.Add(time.Second)); ok {
			t.Fatal("shrank again within a second")
		}
		wait, _ := p.shrinkAfter(report(int64(tgt/mib), 600), now)
		now = now.Add(wait)
	}
	want := []uint64{3584, 3072, 2560, 2048, 1624}
	if len(steps) != len(want) {
		t.Fatalf("steps %v, want %v", steps, want)
	}
	for i := range want {
		if steps[i] != want[i] {
			t.Fatalf("steps %v, want %v", steps, want)
		}
	}
	// A workload grows by 700 MiB: the target follows at once, with the headroom.
	tgt, ok := p.next(report(1624, 1300), now)
	if !ok || tgt != 2324*mib {
		t.Fatalf("growth: %d MiB (%v), want 2324", tgt/mib, ok)
	}
	// It ends: no shrink until calm again.
	if _, ok := p.next(report(2324, 600), now.Add(memCalm-time.Second)); ok {
		t.Fatal("shrank right after growth")
	}
	if wait, ok := p.shrinkAfter(report(2324, 600), now); !ok || wait != memCalm {
		t.Fatalf("the shrink after growth is due in %s (%v), want %s", wait, ok, memCalm)
	}
	// Stalls with plenty available are the balloon's own reclaim of page cache: no
	// deflate, but no shrink for a while either.
	r := report(2324, 600)
	r.Pressure = true
	later := now.Add(memCalm)
	if tgt, ok := p.next(r, later); ok {
		t.Fatalf("pressure with 1.7 GiB available moved the balloon to %d MiB", tgt/mib)
	}
	if wait, ok := p.shrinkAfter(report(2324, 600), later); !ok || wait != memCalm {
		t.Fatalf("after such pressure the next shrink is due in %s (%v), want %s", wait, ok, memCalm)
	}
	// Pressure short of the headroom: everything back.
	r = report(2324, 1400)
	r.Pressure = true
	if tgt, ok := p.next(r, later); !ok || tgt != 4096*mib {
		t.Fatalf("pressure: %d MiB (%v), want the whole 4096", tgt/mib, ok)
	}
	// Headroom nearly gone without a PSI event (a kernel without PSI): the same.
	p2 := newMemPolicy(4096*mib, 2048*mib, t0)
	if tgt, ok := p2.next(report(2048, 1900), t0.Add(time.Second)); !ok || tgt != 4096*mib {
		t.Fatalf("headroom gone: %d MiB (%v), want 4096", tgt/mib, ok)
	}
}

// A small machine never goes below the floor, and the policy never asks for more than
// the machine has.
func TestMemPolicyBounds(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := newMemPolicy(1024*mib, 0, t0)
	now := t0.Add(memCalm)
	for i := 0; i < 10; i++ {
		if _, ok := p.next(report(int64(p.target/mib), 10), now); !ok {
			break
		}
		now = now.Add(memStepEvery)
	}
	if p.target < memFloor {
		t.Fatalf("target %d MiB under the %d MiB floor", p.target/mib, memFloor/mib)
	}
	if tgt, _ := p.next(report(1024, 1000), now); tgt > 1024*mib {
		t.Fatalf("target %d MiB over the machine's 1024", tgt/mib)
	}
	// A balloon found inflated by a saved state is where the policy starts.
	if q := newMemPolicy(2048*mib, 1024*mib, t0); q.target != 1024*mib {
		t.Fatalf("restored target %d MiB", q.target/mib)
	}
}
