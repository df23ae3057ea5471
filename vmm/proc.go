package vmm

import (
	"context"
	"os/exec"
	"sync"
)

// Exit is the end of a VM or of a host process: set once, by whichever watcher sees it
// first, and awaited by any number of callers. The zero value is a running one.
type Exit struct {
	init sync.Once
	end  sync.Once
	done chan struct{}
	err  error
}

func (e *Exit) ch() chan struct{} {
	e.init.Do(func() { e.done = make(chan struct{}) })
	return e.done
}

// Finish ends it with err. Only the first end counts; it reports whether this was it.
func (e *Exit) Finish(err error) bool {
	return e.FinishWith(func() error { return err })
}

// FinishWith ends it with what end returns. end runs for the first end only, and Wait
// returns after it: what must be released once, when the VM is gone, goes there.
func (e *Exit) FinishWith(end func() error) bool {
	first := false
	e.end.Do(func() {
		first = true
		e.err = end()
		close(e.ch())
	})
	return first
}

// Done is closed once it has ended.
func (e *Exit) Done() <-chan struct{} { return e.ch() }

// Exited reports whether it has ended.
func (e *Exit) Exited() bool {
	select {
	case <-e.ch():
		return true
	default:
		return false
	}
}

// Err is the error it ended with; nil while it runs.
func (e *Exit) Err() error {
	if !e.Exited() {
		return nil
	}
	return e.err
}

// Wait blocks until it has ended and returns its error, or ctx's if ctx ends first.
func (e *Exit) Wait(ctx context.Context) error {
	select {
	case <-e.ch():
		return e.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Process is a started host process: an *exec.Cmd (CmdProcess) or a fake of one.
type Process interface {
	// Wait blocks until the process exits and returns its error. Proc calls it once.
	Wait() error
	// Kill ends the process at once.
	Kill() error
}

// CmdProcess is a started cmd as a Process.
func CmdProcess(cmd *exec.Cmd) Process { return cmdProcess{cmd} }

type cmdProcess struct{ cmd *exec.Cmd }

func (p cmdProcess) Wait() error { return p.cmd.Wait() }
func (p cmdProcess) Kill() error { return p.cmd.Process.Kill() }

// Proc is a started host process (QEMU, virtiofsd, wsl.exe) whose exit any number of
// callers may wait for, and which may be killed any number of times.
type Proc struct {
	Exit
	p    Process
	kill sync.Once
}

// WatchProcess waits for p in the background. exited, when set, runs once p has exited
// and before any Wait returns: it releases what the process held and turns its exit
// error into the one Wait reports.
func WatchProcess(p Process, exited func(error) error) *Proc {
	w := &Proc{p: p}
	go func() {
		err := p.Wait()
		w.FinishWith(func() error {
			if exited != nil {
				return exited(err)
			}
			return err
		})
	}()
	return w
}

// Kill kills the process, once, and waits until it has exited or ctx ends. An exited
// process is left alone.
func (w *Proc) Kill(ctx context.Context) error {
	if w.Exited() {
		return nil
	}
	// Its error says little (already gone, or about to be): Wait's is the one that counts.
	w.kill.Do(func() { w.p.Kill() })
	select {
	case <-w.Done():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
