// Package vmmtest is the conformance suite every vmm backend must pass: for real on QEMU
// here, against fakes of the OS tools for the Windows backends, and on a Mac for vz.
package vmmtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/vmm"
)

// Harness supplies what the suite cannot know about a backend.
type Harness struct {
	Backend vmm.Backend
	// Config returns a bootable config whose Dir is fresh for this test.
	Config func(t *testing.T) vmm.Config
	// GuestUp waits until the guest shows it runs (its agent answered). Nil skips the check.
	GuestUp func(ctx context.Context, t *testing.T, cfg vmm.Config, vm vmm.VM) error
	// Alive checks that a running guest answers now (used after a restore, when GuestUp's
	// boot-time signs are gone). Nil skips the suspend test.
	Alive func(ctx context.Context, t *testing.T, cfg vmm.Config, vm vmm.VM) error
	// BootTimeout bounds one boot attempt; defaults to 4 minutes (QEMU under TCG is slow).
	BootTimeout time.Duration
}

// defaultBootTimeout is Harness.BootTimeout's default: QEMU under TCG is slow.
const defaultBootTimeout = 4 * time.Minute

// Run runs the whole suite.
func Run(t *testing.T, h Harness) {
	if h.BootTimeout == 0 {
		h.BootTimeout = defaultBootTimeout
	}
	t.Run("Name", func(t *testing.T) {
		if !regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)?$`).MatchString(h.Backend.Name()) {
			t.Fatalf("backend name %q: want a short lowercase word, or two joined by a hyphen (qemu-wsl)", h.Backend.Name())
		}
	})
	t.Run("Check", func(t *testing.T) {
		if err := h.Backend.Check(context.Background()); err != nil {
			t.Fatalf("Check on a host that supports the backend: %v", err)
		}
	})
	t.Run("MissingKernelFailsClearly", func(t *testing.T) {
		cfg := h.Config(t)
		cfg.Kernel = filepath.Join(t.TempDir(), "no-such-kernel")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		vm, err := h.Backend.Start(ctx, cfg)
		if err == nil {
			// Some hypervisors only notice once running; the VM must then stop on its own.
			werr := vm.Wait(ctx)
			vm.Kill(context.Background())
			if werr == nil {
				t.Fatal("a VM with a missing kernel started and powered off cleanly")
			}
			err = werr
		}
		if !strings.Contains(err.Error(), "no-such-kernel") {
			t.Fatalf("error does not name the missing kernel: %v", err)
		}
	})
	t.Run("PrepareIsIdempotent", func(t *testing.T) {
		p, ok := h.Backend.(vmm.Preparer)
		if !ok {
			t.Skip("backend has no Prepare step")
		}
		cfg := h.Config(t)
		ctx := context.Background()
		if err := p.Prepare(ctx, cfg); err != nil {
			t.Fatalf("Prepare: %v", err)
		}
		if err := p.Prepare(ctx, cfg); err != nil {
			t.Fatalf("second Prepare: %v", err)
		}
		if r, ok := h.Backend.(vmm.Remover); ok {
			if err := r.Remove(ctx, cfg); err != nil {
				t.Fatalf("Remove: %v", err)
			}
			if err := r.Remove(ctx, cfg); err != nil {
				t.Fatalf("second Remove of a removed machine: %v", err)
			}
		}
	})
	t.Run("StartWaitKill", func(t *testing.T) {
		cfg := h.Config(t)
		ctx, cancel := context.WithTimeout(context.Background(), h.BootTimeout)
		defer cancel()
		if p, ok := h.Backend.(vmm.Preparer); ok {
			if err := p.Prepare(ctx, cfg); err != nil {
				t.Fatalf("Prepare: %v", err)
			}
		}
		vm := boot(t, h, cfg)
		defer vm.Kill(context.Background())
		ctx, cancel = context.WithTimeout(context.Background(), h.BootTimeout)
		defer cancel()
		short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
		err := vm.Wait(short)
		cancelShort()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait on a running VM returned %v; want it to block until its context ends", err)
		}
		pid := 0
		if p, ok := vm.(vmm.ProcessVM); ok {
			pid = p.PID()
			if pid <= 0 {
				t.Fatalf("PID() = %d on a running VM", pid)
			}
		}
		if err := vm.Kill(ctx); err != nil {
			t.Fatalf("Kill: %v", err)
		}
		waitCtx, cancelWait := context.WithTimeout(ctx, 30*time.Second)
		defer cancelWait()
		if err := vm.Wait(waitCtx); errors.Is(err, context.DeadlineExceeded) {
			t.Fatal("Wait did not return within 30s of Kill")
		}
		if err := vm.Kill(ctx); err != nil {
			t.Fatalf("second Kill: %v", err)
		}
		if pid > 0 {
			if processAlive(pid) {
				t.Fatalf("VM process %d still exists after Kill and Wait", pid)
			}
		}
	})
	t.Run("SuspendRestore", func(t *testing.T) { suspendRestore(t, h) })
}

// Boot is the suite's boot for a test of its own: it starts cfg's VM and waits for the
// guest, booting again after an emulator's panic or hang as boot does.
func Boot(t *testing.T, h Harness, cfg vmm.Config) vmm.VM {
	t.Helper()
	if h.BootTimeout == 0 {
		h.BootTimeout = defaultBootTimeout
	}
	return boot(t, h, cfg)
}

// boot starts cfg's VM and waits until GuestUp sees the guest run, each attempt within
// h.BootTimeout. A kernel panic during boot (see vmm.BootPanic) or a guest that hangs boots
// again, twice at most, as the host agent does for a panic: both are the emulator's
// hazards, independent for each boot. Anything else fails at once with the console's end.
func boot(t *testing.T, h Harness, cfg vmm.Config) vmm.VM {
	t.Helper()
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), h.BootTimeout)
		vm, err := h.Backend.Start(ctx, cfg)
		if err != nil {
			cancel()
			t.Fatalf("Start: %v", err)
		}
		if h.GuestUp == nil {
			cancel()
			return vm
		}
		err = guestUp(ctx, t, h, cfg, vm)
		cancel()
		if err == nil {
			return vm
		}
		vm.Kill(context.Background())
		vm.Wait(context.Background())
		console := readConsole(cfg.SerialLog)
		why := ""
		switch {
		case vmm.BootPanic(console):
			why = "the guest kernel panicked"
		case errors.Is(err, context.DeadlineExceeded):
			why = fmt.Sprintf("the guest hung (no sign of life within %s)", h.BootTimeout)
		}
		if why == "" || attempt == 3 {
			t.Fatalf("guest did not come up (boot %d): %v\nthe console ended:\n%s", attempt, err, consoleTail(console))
		}
		t.Logf("boot %d: %s; booting again. The console ended:\n%s", attempt, why, consoleTail(console))
	}
}

// guestUp runs h.GuestUp, cut short when the VM ends on its own.
func guestUp(ctx context.Context, t *testing.T, h Harness, cfg vmm.Config, vm vmm.VM) error {
	upCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		err := vm.Wait(upCtx)
		if upCtx.Err() == nil {
			cancel(fmt.Errorf("the VM ended during boot: %v", err))
		}
	}()
	err := h.GuestUp(upCtx, t, cfg, vm)
	if cause := context.Cause(upCtx); err != nil && cause != nil && !errors.Is(cause, ctx.Err()) {
		return cause
	}
	return err
}

// readConsole reads a VM's console log; a backend without one (an empty path) or a missing
// file reads as a note saying so, which no panic check matches.
func readConsole(path string) []byte {
	if path == "" {
		return []byte("(the backend keeps no console log)")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return []byte(fmt.Sprintf("(no console: %v)", err))
	}
	return b
}

// consoleTail is the last few KiB of a console: where a boot stopped.
func consoleTail(console []byte) string {
	if len(console) > 4096 {
		console = console[len(console)-4096:]
	}
	return string(console)
}

// TempDir makes a directory short enough for unix sockets (t.TempDir paths can exceed
// macOS's 104-byte limit).
func TempDir(t *testing.T) string {
	d, err := os.MkdirTemp("", "vmmt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// suspendRestore: a VM saved with Suspend stops, and Restore brings the same guest back.
func suspendRestore(t *testing.T, h Harness) {
	w, ok := h.Backend.(vmm.Warm)
	if !ok || h.Alive == nil {
		t.Skip("backend has no warm start")
	}
	cfg := h.Config(t)
	if f := vmm.Features(h.Backend, nil); !f.WarmStart {
		t.Fatalf("Features = %+v: a warm backend says it has no warm start", f)
	}
	if got := w.DiskFiles(cfg); len(got) != len(cfg.Disks) {
		t.Fatalf("DiskFiles = %v for %d disks", got, len(cfg.Disks))
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.BootTimeout)
	defer cancel()
	// Nothing was saved: there is nothing to drop, and that is no error.
	if err := w.DiscardState(ctx, cfg); err != nil {
		t.Fatalf("DiscardState with no saved state: %v", err)
	}
	key, err := w.StateKey(ctx, cfg)
	if err != nil || key == "" {
		t.Fatalf("StateKey = %q, %v", key, err)
	}
	other := cfg
	other.MemoryMiB *= 2
	if k2, _ := w.StateKey(ctx, other); k2 == key {
		t.Fatal("StateKey does not change with the VM's memory size")
	}
	vm := boot(t, h, cfg)
	defer vm.Kill(context.Background())
	ctx, cancel = context.WithTimeout(context.Background(), h.BootTimeout)
	defer cancel()
	if err := w.CanSuspend(vm); err != nil {
		t.Fatalf("CanSuspend of a booted VM: %v", err)
	}
	if f := vmm.Features(h.Backend, vm); !f.WarmStart || f.NoWarmStart != "" {
		t.Fatalf("Features of a VM that can suspend = %+v", f)
	}
	state := filepath.Join(cfg.Dir, "suspended")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if err := w.Suspend(ctx, vm, state); err != nil {
		t.Fatalf("Suspend: %v", err)
	}
	waitCtx, cancelWait := context.WithTimeout(ctx, 30*time.Second)
	defer cancelWait()
	if err := vm.Wait(waitCtx); errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("the VM still runs after Suspend returned")
	}
	size, err := vmm.StateSize(state)
	if err != nil || size == 0 {
		t.Fatalf("no saved state in %s after Suspend: %v", state, err)
	}
	t.Logf("suspended in %s, saved state %d MiB on disk", time.Since(began).Round(time.Millisecond), size>>20)
	began = time.Now()
	vm2, err := w.Restore(ctx, cfg, state)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	t.Logf("restored in %s", time.Since(began).Round(time.Millisecond))
	defer vm2.Kill(context.Background())
	if err := h.Alive(ctx, t, cfg, vm2); err != nil {
		t.Fatalf("the restored guest does not answer: %v", err)
	}
	if err := w.CanSuspend(vm2); err != nil {
		t.Fatalf("CanSuspend of a restored VM: %v", err)
	}
	if _, err := w.Restore(ctx, cfg, filepath.Join(cfg.Dir, "no-such-state")); err == nil {
		t.Fatal("Restore from a missing state file succeeded")
	}
}
