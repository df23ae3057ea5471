package hostagent

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/skiff-dev/skiff/forward"
	"github.com/skiff-dev/skiff/forward/transport"
	"github.com/skiff-dev/skiff/machine/agentapi"
	"github.com/skiff-dev/skiff/vmm"
)

// The balloon policy's settings. The guest keeps headroom above what it uses, so a
// workload that grows has room while the balloon deflates; the floor keeps the engine
// comfortable; a shrink waits until the guest has been calm for a while and goes in steps,
// each confirmed by the guest's next report, so page cache is dropped gradually.
const (
	memHeadroomMin = 512 << 20
	memFloor       = 512 << 20
	memShrinkStep  = 512 << 20
	memHysteresis  = 128 << 20
	memCalm        = 30 * time.Second
)

// memPolicy decides the guest's memory target from its reports. It is pure: the agent
// feeds it reports and applies what it says.
type memPolicy struct {
	total  uint64 // the machine's memory: the balloon empty
	target uint64 // what the balloon leaves the guest now
	// calmAfter: no shrinking before then (set by pressure and by growth).
	calmAfter time.Time
}

func newMemPolicy(total, target uint64, now time.Time) *memPolicy {
	if target == 0 || target > total {
		target = total
	}
	return &memPolicy{total: total, target: target, calmAfter: now.Add(memCalm)}
}

func (p *memPolicy) headroom() uint64 { return max(memHeadroomMin, p.total/4) }

// next is the target after report r: all of the machine at once under pressure or when
// the headroom is nearly gone, more at once when use grew, less step by step when the
// guest has been calm. ok is false when the target stays.
func (p *memPolicy) next(r forward.MemoryReport, now time.Time) (target uint64, ok bool) {
	used := uint64(r.UsedKiB()) << 10
	avail := uint64(max(r.AvailableKiB, 0)) << 10
	want := min(max(used+p.headroom(), memFloor), p.total)
	switch {
	case r.Pressure || avail < p.headroom()/4:
		p.calmAfter = now.Add(memCalm)
		return p.set(p.total)
	case want > p.target:
		p.calmAfter = now.Add(memCalm)
		return p.set(want)
	case want+memHysteresis < p.target && !now.Before(p.calmAfter):
		return p.set(max(want, p.target-min(memShrinkStep, p.target)))
	}
	return p.target, false
}

func (p *memPolicy) set(t uint64) (uint64, bool) {
	if t == p.target {
		return t, false
	}
	p.target = t
	return t, true
}

// memWatch is what the agent knows of the guest's memory, for State.
type memWatch struct {
	mu     sync.Mutex
	last   forward.MemoryReport
	target uint64
	moves  int
}

// runBalloon drives the VM's traditional balloon from the guest's memory reports, for
// backends that return nothing otherwise (vz; QEMU with --memory-reclaim balloon). It
// ends with ctx; the balloon is left where it is (a suspend keeps it, a stop ends it).
func (a *Agent) runBalloon(ctx context.Context, vm vmm.VM, guest transport.Dialer) {
	b, ok := vm.(vmm.Balloon)
	if !ok {
		return
	}
	total := uint64(a.Spec.MemoryMiB) << 20
	target, err := b.MemoryTarget(ctx)
	if err != nil {
		a.logf("memory: balloon: %v", err)
	}
	p := newMemPolicy(total, target, time.Now())
	w := &memWatch{target: p.target}
	a.mu.Lock()
	a.mem = w
	a.mu.Unlock()
	for ctx.Err() == nil {
		conn, err := guest.Dial(ctx, forward.ServiceMemory)
		if err != nil {
			a.logf("memory: %v", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		dec := json.NewDecoder(conn)
		for {
			var r forward.MemoryReport
			if err := dec.Decode(&r); err != nil {
				break
			}
			t, change := p.next(r, time.Now())
			w.mu.Lock()
			w.last = r
			w.mu.Unlock()
			if !change {
				continue
			}
			if err := b.SetMemoryTarget(ctx, t); err != nil {
				if ctx.Err() == nil {
					a.logf("memory: balloon to %d MiB: %v", t>>20, err)
				}
				continue
			}
			w.mu.Lock()
			w.target, w.moves = t, w.moves+1
			w.mu.Unlock()
			a.logf("memory: guest uses %d MiB, has %d MiB available%s: balloon leaves it %d MiB of %d",
				r.UsedKiB()>>10, r.AvailableKiB>>10, pressureNote(r), t>>20, total>>20)
		}
		stop()
		conn.Close()
	}
}

func pressureNote(r forward.MemoryReport) string {
	if r.Pressure {
		return " and is under pressure"
	}
	return ""
}

// memoryState is State's Memory: how memory goes back, what the host sees of the VM, and
// what the balloon policy last heard and did. It is computed now.
func (a *Agent) memoryState(vm vmm.VM) *agentapi.Memory {
	if vm == nil {
		return nil
	}
	m := &agentapi.Memory{MachineBytes: uint64(a.Spec.MemoryMiB) << 20}
	if r, ok := vm.(vmm.Reclaimer); ok {
		m.Reclaim = r.Reclaim()
	}
	if p, ok := vm.(vmm.ProcessVM); ok {
		m.HostBytes = processRSS(p.PID())
	}
	a.mu.Lock()
	w := a.mem
	a.mu.Unlock()
	if w != nil {
		w.mu.Lock()
		m.TargetBytes, m.BalloonMoves = w.target, w.moves
		m.BalloonBytes = m.MachineBytes - min(w.target, m.MachineBytes)
		if w.last.TotalKiB > 0 {
			m.GuestUsedBytes = uint64(w.last.UsedKiB()) << 10
			m.GuestAvailableBytes = uint64(w.last.AvailableKiB) << 10
		}
		w.mu.Unlock()
	}
	return m
}
