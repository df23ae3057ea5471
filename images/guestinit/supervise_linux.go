package guestinit

import (
	"io"
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

// Run starts cmd and waits for it and for its output. os/exec copies output that is not a
// file through a pipe, and only its Wait, which the reaper stands in for, waits for that
// copy to finish; so Run makes the pipes itself and drains them before it returns.
func (r *Reaper) Run(cmd *exec.Cmd) (syscall.WaitStatus, error) {
	var copies sync.WaitGroup
	var ends []*os.File
	defer func() {
		for _, f := range ends {
			f.Close()
		}
	}()
	stdout := cmd.Stdout
	for _, w := range []*io.Writer{&cmd.Stdout, &cmd.Stderr} {
		if _, isFile := (*w).(*os.File); *w == nil || isFile {
			continue
		}
		if w == &cmd.Stderr && cmd.Stderr == stdout {
			cmd.Stderr = cmd.Stdout // one pipe keeps the two streams in order
			continue
		}
		pr, pw, err := os.Pipe()
		if err != nil {
			return 0, err
		}
		ends = append(ends, pw)
		copies.Add(1)
		go func(dst io.Writer) {
			defer copies.Done()
			io.Copy(dst, pr)
			pr.Close()
		}(*w)
		*w = pw
	}
	ch, err := r.Start(cmd)
	for _, f := range ends {
		f.Close() // the child has its own; the copies end when it is done with them
	}
	ends = nil
	if err != nil {
		copies.Wait()
		return 0, err
	}
	ws := <-ch
	copies.Wait()
	return ws, nil
}
