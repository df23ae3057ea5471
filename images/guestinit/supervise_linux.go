package guestinit

import (
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Reaper is PID 1's child bookkeeping. Orphans re-parent to PID 1 and must be reaped, but
// os/exec's Wait would race with a blanket wait4(-1); so children are started through the
// reaper, which delivers each exit to whoever started it.
type Reaper struct {
	mu      sync.Mutex
	waiters map[int]chan syscall.WaitStatus
	early   map[int]syscall.WaitStatus
}

// NewReaper starts reaping. Call once, in PID 1.
func NewReaper() *Reaper {
	r := &Reaper{waiters: map[int]chan syscall.WaitStatus{}, early: map[int]syscall.WaitStatus{}}
	ch := make(chan os.Signal, 16)
	signal.Notify(ch, unix.SIGCHLD)
	go func() {
		for range ch {
			r.reap()
		}
	}()
	return r
}

func (r *Reaper) reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
		r.mu.Lock()
		if w, ok := r.waiters[pid]; ok {
			w <- ws
			delete(r.waiters, pid)
		} else {
			r.early[pid] = ws
		}
		r.mu.Unlock()
	}
}

// Start runs cmd and returns a channel that receives its exit status.
func (r *Reaper) Start(cmd *exec.Cmd) (<-chan syscall.WaitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ch := make(chan syscall.WaitStatus, 1)
	pid := cmd.Process.Pid
	if ws, ok := r.early[pid]; ok {
		ch <- ws
		delete(r.early, pid)
	} else {
		r.waiters[pid] = ch
	}
	return ch, nil
}

// Run starts cmd and waits for it.
func (r *Reaper) Run(cmd *exec.Cmd) (syscall.WaitStatus, error) {
	ch, err := r.Start(cmd)
	if err != nil {
		return 0, err
	}
	return <-ch, nil
}
