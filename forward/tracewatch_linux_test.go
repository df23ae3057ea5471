package forward

import (
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestTraceWatch needs root, BPF and tracefs; it says why where they are missing.
func TestTraceWatch(t *testing.T) {
	w, err := NewTraceWatch("syscalls/sys_enter_inotify_add_watch", "sched/sched_process_exec")
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) || errors.Is(err, os.ErrNotExist) || (err != nil && os.Geteuid() != 0) {
		t.Skipf("no BPF tracepoints here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// The tracepoints are the whole system's: other processes' events come too, so
	// drain gives up waiting for quiet after a while (watchChecks).
	drain, expect := watchChecks(t, w.C())
	drain()
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	drain() // inotify_init is not a watch
	if _, err := unix.InotifyAddWatch(fd, t.TempDir(), unix.IN_CREATE); err != nil {
		t.Fatal(err)
	}
	expect("an inotify watch added")
	drain()
	if err := exec.Command("true").Run(); err != nil {
		t.Fatal(err)
	}
	expect("a program started")
	w.Close()
	drain()
	if _, err := unix.InotifyAddWatch(fd, os.TempDir(), unix.IN_CREATE); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.C():
		t.Fatal("an event after Close")
	case <-time.After(300 * time.Millisecond):
	}
}
