package hostagent

import (
	"context"
	"encoding/json"
	"net"
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
	memStepEvery   = 5 * time.Second
)

// memPolicy decides the guest's memory target from its reports. It is pure: the agent
// feeds it reports and applies what it says.
type memPolicy struct {
	total  uint64 // the machine's memory: the balloon empty
	target uint64 // what the balloon leaves the guest now
	// calmAfter: no shrinking before then (set by pressure and by growth, and by each
	// shrink step, so that the guest's answer to one comes before the next).
	calmAfter time.Time
}

func newMemPolicy(total, target uint64, now time.Time) *memPolicy {
	if target == 0 || target > total {
		target = total
	}
	return &memPolicy{total: total, target: target, calmAfter: now.Add(memCalm)}
}

func (p *memPolicy) headroom() uint64 { return max(memHeadroomMin, p.total/4) }

// next is the target after report r: all of the machine at once when the guest stalls on
// memory short of its headroom or has nearly none left, more at once when use grew, less
// step by step when the guest has been calm. ok is false when the target stays.
func (p *memPolicy) next(r forward.MemoryReport, now time.Time) (target uint64, ok bool) {
	avail := uint64(max(r.AvailableKiB, 0)) << 10
	want := p.want(r)
	switch {
	case r.Pressure && avail >= p.headroom():
		// Stalls while plenty is available are reclaim of page cache, which an inflating
		// balloon causes itself: stop shrinking for a while, but a deflate is not needed
		// (it made the balloon see-saw here, every shrink step undone by its own stall).
		p.calmAfter = now.Add(memCalm)
		return p.target, false
	case r.Pressure || avail < p.headroom()/4:
		p.calmAfter = now.Add(memCalm)
		return p.set(p.total)
	case want > p.target:
		p.calmAfter = now.Add(memCalm)
		return p.set(want)
	case want+memHysteresis < p.target && !now.Before(p.calmAfter):
		p.calmAfter = now.Add(memStepEvery)
		return p.set(max(want, p.target-min(memShrinkStep, p.target)))
	}
	return p.target, false
}

// want is the target report r asks for once calm: the guest's use plus the headroom,
// between the floor and the machine.
func (p *memPolicy) want(r forward.MemoryReport) uint64 {
	used := uint64(r.UsedKiB()) << 10
	return min(max(used+p.headroom(), memFloor), p.total)
}

// shrinkAfter says whether r leaves a shrink to make once the guest is calm, and when.
func (p *memPolicy) shrinkAfter(r forward.MemoryReport, now time.Time) (time.Duration, bool) {
	if r.TotalKiB == 0 || p.want(r)+memHysteresis >= p.target {
		return 0, false
	}
	return max(p.calmAfter.Sub(now), 0), true
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
	total  uint64 // the machine's memory
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
	w := &memWatch{total: total, target: p.target}
	a.mu.Lock()
	a.mem = w
	a.mu.Unlock()
	a.followGuest(ctx, guest, forward.ServiceMemory, func(conn net.Conn) { a.followMemory(ctx, conn, b, p, w) })
}

// followMemory applies the policy to each report on conn until it ends. A shrink the
// policy holds back until the guest has been calm is re-asked when that time comes: a
// calm guest sends nothing more.
func (a *Agent) followMemory(ctx context.Context, conn net.Conn, b vmm.Balloon, p *memPolicy, w *memWatch) {
	reports := make(chan forward.MemoryReport)
	go func() {
		defer close(reports)
		dec := json.NewDecoder(conn)
		for {
			var r forward.MemoryReport
			if dec.Decode(&r) != nil {
				return
			}
			select {
			case reports <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	defer func() {
		conn.Close() // followGuest's too: the reader must end before this returns
		for range reports {
		}
	}()
	later := time.NewTimer(time.Hour)
	later.Stop()
	defer later.Stop()
	var last forward.MemoryReport
	for {
		select {
		case <-ctx.Done():
			return
		case r, ok := <-reports:
			if !ok {
				return
			}
			last = r
			w.mu.Lock()
			w.last = r
			w.mu.Unlock()
		case <-later.C:
		}
		if t, change := p.next(last, time.Now()); change {
			a.setBalloon(ctx, b, w, t, last)
		}
		if wait, ok := p.shrinkAfter(last, time.Now()); ok {
			later.Reset(wait)
		}
	}
}

// setBalloon moves the balloon to target and records it.
func (a *Agent) setBalloon(ctx context.Context, b vmm.Balloon, w *memWatch, t uint64, r forward.MemoryReport) {
	if err := b.SetMemoryTarget(ctx, t); err != nil {
		if ctx.Err() == nil {
			a.logf("memory: balloon to %d MiB: %v", t>>20, err)
		}
		return
	}
	w.mu.Lock()
	w.target, w.moves = t, w.moves+1
	w.mu.Unlock()
	a.logf("memory: guest uses %d MiB, has %d MiB available%s: the balloon leaves it %d MiB of %d",
		r.UsedKiB()>>10, r.AvailableKiB>>10, pressureNote(r), t>>20, w.total>>20)
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
