package fsevents

import (
	"context"
	"time"

	"github.com/skiff-dev/skiff/forward"
)

// When the guest looks again, with the kernel's tracepoints: an inotify watch added
// anywhere in the guest means a scan for watched inodes soon; a program started means
// reading the mounts of new namespaces a few times while the container settles. An idle
// guest then wakes only for safetyEvery.
const (
	watchQuiet  = 100 * time.Millisecond // a watcher adds its watches in a burst
	scanGap     = 500 * time.Millisecond // the least time between two scans
	safetyEvery = time.Minute            // what no tracepoint tells: watches removed
)

// wakes says when to scan for watches and when to read the mounts again.
type wakes struct {
	scans, mounts chan struct{}
	stop          func()
	traced        bool // by the tracepoints, not timers
}

// newWakes follows the tracepoints, or falls back to the timers of o when the kernel
// cannot tell (no BPF or tracefs). Mounts are looked at only with mounts set.
func newWakes(ctx context.Context, o GuestOptions, mounts bool) *wakes {
	ctx, cancel := context.WithCancel(ctx)
	w := &wakes{scans: make(chan struct{}, 1), mounts: make(chan struct{}, 1), stop: cancel}
	added, errA := forward.NewTraceWatch("syscalls/sys_enter_inotify_add_watch")
	var execs *forward.TraceWatch
	var errE error
	if errA == nil && mounts {
		execs, errE = forward.NewTraceWatch("sched/sched_process_exec")
	}
	if errA != nil || errE != nil {
		if added != nil {
			added.Close()
		}
		o.Logf("file events: looking every %v for watches and every %v for mounts: %v", o.ScanEvery, o.MountEvery, firstErr(errA, errE))
		go w.tick(ctx, o, mounts)
		return w
	}
	w.traced = true
	var execC <-chan struct{}
	if execs != nil {
		execC = execs.C()
	}
	go func() {
		defer added.Close()
		if execs != nil {
			defer execs.Close()
		}
		w.follow(ctx, o, added.C(), execC)
	}()
	return w
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// tick is the fallback: both looks on timers.
func (w *wakes) tick(ctx context.Context, o GuestOptions, mounts bool) {
	t := time.NewTicker(o.ScanEvery)
	defer t.Stop()
	var mc <-chan time.Time
	if mounts {
		mt := time.NewTicker(o.MountEvery)
		defer mt.Stop()
		mc = mt.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			signal(w.scans)
		case <-mc:
			signal(w.mounts)
		}
	}
}

// follow turns tracepoint notes into looks: a scan watchQuiet after a watch is added (at
// most one per scanGap), and the mounts every settle tick while programs start.
func (w *wakes) follow(ctx context.Context, o GuestOptions, added, execC <-chan struct{}) {
	scanT := time.NewTimer(0)
	<-scanT.C
	mountT := time.NewTimer(0)
	<-mountT.C
	safety := time.NewTicker(safetyEvery)
	defer safety.Stop()
	var scanArmed, mountArmed bool
	var lastScan, settleUntil time.Time
	armScan := func() {
		if scanArmed {
			return
		}
		scanArmed = true
		scanT.Reset(max(watchQuiet, time.Until(lastScan.Add(scanGap))))
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-added:
			armScan()
		case <-execC:
			settleUntil = time.Now().Add(settleTime)
			if !mountArmed {
				mountArmed = true
				mountT.Reset(o.MountEvery)
			}
		case <-scanT.C:
			scanArmed, lastScan = false, time.Now()
			signal(w.scans)
		case <-mountT.C:
			mountArmed = false
			signal(w.mounts)
			if time.Now().Before(settleUntil) {
				mountArmed = true
				mountT.Reset(o.MountEvery)
			}
		case <-safety.C:
			signal(w.scans)
			if execC != nil {
				signal(w.mounts)
			}
		}
	}
}
