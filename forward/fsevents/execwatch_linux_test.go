package fsevents

import (
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestExecWatch needs root and the kernel's process connector; it says why where they
// are missing.
func TestExecWatch(t *testing.T) {
	w, err := newExecWatch()
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EPROTONOSUPPORT) || (err != nil && os.Geteuid() != 0) {
		t.Skipf("no process connector here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := 0; i < 3; i++ {
		// Drain what other programs on this host started.
		for drained := false; !drained; {
			select {
			case <-w.C():
			case <-time.After(100 * time.Millisecond):
				drained = true
			}
		}
		if err := exec.Command("/bin/true").Run(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-w.C():
		case <-time.After(10 * time.Second):
			t.Fatalf("run %d: no news of an exec", i)
		}
	}
	w.Close()
	w.Close() // twice is fine
}

func TestPace(t *testing.T) {
	t0 := time.Unix(1000, 0)
	timers := pace{scanEvery: 2 * time.Second, lastExec: t0}
	news := pace{scanEvery: 2 * time.Second, news: true, lastExec: t0}
	later := t0.Add(time.Hour)
	for _, c := range []struct {
		what     string
		p        pace
		now      time.Time
		watching bool
		scan     time.Duration
		mounts   bool
	}{
		{"no news: timers", timers, later, false, 2 * time.Second, true},
		{"just after an exec", news, t0.Add(time.Second), false, 2 * time.Second, true},
		{"settled, still soon after an exec", news, t0.Add(settleTime + time.Second), false, 2 * time.Second, false},
		{"idle", news, later, false, fullEvery, false},
		{"idle but a process watches the share", news, later, true, 2 * time.Second, false},
	} {
		if got := c.p.scanAfter(c.now, c.watching); got != c.scan {
			t.Errorf("%s: next scan after %v, want %v", c.what, got, c.scan)
		}
		if got := c.p.mountsDue(c.now); got != c.mounts {
			t.Errorf("%s: mounts due %v, want %v", c.what, got, c.mounts)
		}
	}
}
