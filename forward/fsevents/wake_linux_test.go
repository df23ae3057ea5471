package fsevents

import (
	"context"
	"testing"
	"time"
)

// TestWakesFollow drives the tracepoint notes by hand (forward's TestTraceWatch shows the
// kernel sends them): a watch added wakes one scan after watchQuiet, a burst of them no
// more than one per scanGap, and a program started wakes looks at the mounts until its
// namespace settled, then none.
func TestWakesFollow(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &wakes{scans: make(chan struct{}, 1), mounts: make(chan struct{}, 1)}
	added, execs := make(chan struct{}, 1), make(chan struct{}, 1)
	go w.follow(ctx, GuestOptions{MountEvery: 50 * time.Millisecond}, added, execs)
	count := func(c chan struct{}, d time.Duration) (n int) {
		end := time.After(d)
		for {
			select {
			case <-c:
				n++
			case <-end:
				return n
			}
		}
	}
	if n := count(w.scans, 300*time.Millisecond) + count(w.mounts, 0); n != 0 {
		t.Fatalf("%d looks with no note", n)
	}
	start := time.Now()
	added <- struct{}{}
	<-w.scans
	if d := time.Since(start); d < watchQuiet {
		t.Fatalf("scanned %v after a watch was added, before the burst could end (%v)", d, watchQuiet)
	}
	// A burst of adds over 1.2 s: at most one scan per scanGap.
	end := time.Now().Add(1200 * time.Millisecond)
	scans := 0
	for time.Now().Before(end) {
		select {
		case added <- struct{}{}:
		default:
		}
		select {
		case <-w.scans:
			scans++
		case <-time.After(10 * time.Millisecond):
		}
	}
	scans += count(w.scans, scanGap+100*time.Millisecond)
	if scans < 2 || scans > 4 {
		t.Fatalf("%d scans for a 1.2 s burst of watches: want one per %v", scans, scanGap)
	}
	execs <- struct{}{}
	if n := count(w.mounts, settleTime+200*time.Millisecond); n < 10 {
		t.Fatalf("%d looks at the mounts while a program's namespace settles: want one per 50ms", n)
	}
	if n := count(w.mounts, 500*time.Millisecond); n != 0 {
		t.Fatalf("%d looks at the mounts after the namespace settled", n)
	}
	if n := count(w.scans, 0); n != 0 {
		t.Fatalf("a program started woke %d scans by itself (its watches wake them)", n)
	}
}
