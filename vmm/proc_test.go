package vmm

import (
	"context"
	"errors"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestExitOnce(t *testing.T) {
	var e Exit
	if e.Exited() || e.Err() != nil {
		t.Fatal("a fresh Exit has ended")
	}
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := e.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait before the end = %v", err)
	}
	first := errors.New("first")
	var ends atomic.Int32
	var wg sync.WaitGroup
	got := make([]error, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = e.Wait(context.Background())
		}()
	}
	if !e.FinishWith(func() error { ends.Add(1); return first }) {
		t.Fatal("the first end did not count")
	}
	if e.Finish(errors.New("second")) || e.FinishWith(func() error { ends.Add(1); return nil }) {
		t.Fatal("a second end counted")
	}
	wg.Wait()
	for _, err := range got {
		if err != first {
			t.Fatalf("Wait = %v, want the first end's error", err)
		}
	}
	if ends.Load() != 1 || !e.Exited() || e.Err() != first {
		t.Fatalf("ends=%d exited=%v err=%v", ends.Load(), e.Exited(), e.Err())
	}
}

// fakeProcess exits when killed, with an error, and counts its kills.
type fakeProcess struct {
	kills atomic.Int32
	exit  chan error
}

func (p *fakeProcess) Wait() error { return <-p.exit }
func (p *fakeProcess) Kill() error {
	if p.kills.Add(1) == 1 {
		p.exit <- errors.New("signal: killed")
	}
	return nil
}

func TestProcKillTwice(t *testing.T) {
	p := &fakeProcess{exit: make(chan error, 1)}
	var released atomic.Int32
	w := WatchProcess(p, func(err error) error {
		released.Add(1)
		return errors.Join(errors.New("the VM ended"), err)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.Kill(ctx); err != nil {
				t.Errorf("Kill: %v", err)
			}
		}()
	}
	wg.Wait()
	if err := w.Kill(ctx); err != nil {
		t.Fatalf("Kill of an exited process: %v", err)
	}
	err := w.Wait(ctx)
	if err == nil || err.Error() != "the VM ended\nsignal: killed" {
		t.Fatalf("Wait = %v", err)
	}
	if p.kills.Load() != 1 || released.Load() != 1 {
		t.Fatalf("kills=%d released=%d, want 1 each", p.kills.Load(), released.Load())
	}
}

func TestProcCmd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.Command("sh", "-c", "exit 3")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	var ee *exec.ExitError
	if err := WatchProcess(CmdProcess(cmd), nil).Wait(ctx); !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("Wait = %v, want exit status 3", err)
	}

	cmd = exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	w := WatchProcess(CmdProcess(cmd), nil)
	if err := w.Kill(ctx); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if err := w.Wait(ctx); !errors.As(err, &ee) {
		t.Fatalf("Wait after Kill = %v, want the kill's exit error", err)
	}
	if err := w.Kill(ctx); err != nil {
		t.Fatalf("second Kill: %v", err)
	}
}
