package hostagent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/skiff-dev/skiff/forward"
	"github.com/skiff-dev/skiff/forward/hostports"
	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/machine/agentapi"
	"github.com/skiff-dev/skiff/vmm"
)

// Warm start: `stop` saves the running VM (RAM, devices) next to its disks and `start`
// resumes it, so the engine answers in about a second instead of a cold boot. A saved
// state is used only while everything it was saved with is unchanged; any doubt means a
// cold boot, with the reason in the log and in inspect.

// ResumeTimeout bounds how long a restored guest may take to answer.
var ResumeTimeout = 30 * time.Second

// settingsHash identifies what the guest was booted with (the seed, minus its clock).
func (a *Agent) settingsHash() (string, error) {
	b, err := a.seedBytes(time.Unix(0, 0))
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:]), nil
}

// restore starts the VM from the machine's saved state if it may be, and returns the
// forwards saved with it. It returns nil and the reason when the machine must boot cold;
// the saved state is gone either way, since a resumed guest writes to the disks at once.
func (a *Agent) restore(ctx context.Context, cfg vmm.Config) (vmm.VM, *hostports.Sources, string) {
	vm, saved, why := a.restoreVM(ctx, cfg)
	if vm == nil || len(saved.Forwards) == 0 {
		return vm, nil, why
	}
	var fw hostports.Sources
	if err := json.Unmarshal(saved.Forwards, &fw); err != nil {
		a.logf("forwards saved with the VM: %v; the guest will tell them again", err)
		return vm, nil, why
	}
	return vm, &fw, why
}

func (a *Agent) restoreVM(ctx context.Context, cfg vmm.Config) (vmm.VM, *machine.SavedState, string) {
	saved, err := a.Dir.ReadSavedState()
	if saved == nil && err == nil {
		a.discardState(ctx, cfg) // a save the agent did not finish
		return nil, nil, ""
	}
	restored := false
	defer func() {
		if restored {
			if err := a.Dir.RetireSavedState(); err != nil {
				a.logf("retire the restored state: %v", err)
			}
		} else {
			a.discardState(ctx, cfg)
		}
	}()
	if err != nil {
		return nil, nil, fmt.Sprintf("the saved state is unreadable: %v", err)
	}
	w, ok := a.Backend.(vmm.Warm)
	if !ok {
		return nil, nil, fmt.Sprintf("the %s backend cannot restore a saved state", a.Backend.Name())
	}
	key, err := w.StateKey(ctx, cfg)
	if err != nil {
		return nil, nil, err.Error()
	}
	if key != saved.Key {
		return nil, nil, "the VM's hardware, image or hypervisor changed since the suspend"
	}
	if h, err := a.settingsHash(); err != nil || h != saved.Settings {
		return nil, nil, "the machine's settings changed since the suspend"
	}
	if why := saved.Mismatch(); why != "" {
		return nil, nil, why
	}
	vm, err := w.Restore(ctx, cfg, a.Dir.File(machine.DirSavedState))
	if err != nil {
		return nil, nil, fmt.Sprintf("restoring the saved state failed: %v", err)
	}
	restored = true
	return vm, saved, ""
}

// discardState drops a saved state wherever the backend keeps it.
func (a *Agent) discardState(ctx context.Context, cfg vmm.Config) {
	if w, ok := a.Backend.(vmm.Warm); ok {
		if err := w.DiscardState(ctx, cfg); err != nil {
			a.warn("discard the VM's saved state: %v", err)
		}
	}
	a.Dir.DiscardSavedState()
}

// resumeGuest tells a restored guest the time and waits for its engine: the machine is
// ready when the guest agent says the engine answers. It returns where the time went.
func (a *Agent) resumeGuest(ctx context.Context) ([]forward.Step, error) {
	ctx, cancel := context.WithTimeout(ctx, ResumeTimeout)
	defer cancel()
	for try := 1; ; try++ {
		c, cancelTry := context.WithTimeout(ctx, 5*time.Second)
		asked := time.Now()
		resp, err := a.control(c, forward.ControlRequest{Op: forward.OpResume, TimeNano: time.Now().UnixNano()})
		cancelTry()
		if err == nil && resp.Error != "" {
			a.warn("after the restore: %s", resp.Error)
		}
		if err == nil && resp.Info != nil && resp.Info.EngineAPI != "" {
			took := time.Since(asked)
			steps := withStream(took, resp.Steps)
			a.logf("guest resumed (attempt %d) in %s: %s; its clock was off by %s", try, took.Round(time.Millisecond),
				forward.StepsText(steps), time.Duration(resp.DriftNano).Round(time.Millisecond))
			a.setReady(&forward.Ready{EngineAPI: resp.Info.EngineAPI, BootMillis: resp.Info.UptimeSeconds * 1000})
			return steps, nil
		}
		if err == nil {
			err = errors.New("the engine does not answer yet")
		}
		a.logf("resume attempt %d: %v", try, err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the restored guest did not resume: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// errNoSuspend means the backend cannot suspend; stop then boots cold without a warning.
var errNoSuspend = errors.New("the backend cannot suspend")

// suspend saves the running VM, with the forwards it served, and stops it. On error the
// VM still runs and the guest has been told to carry on.
func (a *Agent) suspend(cfg vmm.Config, forwards hostports.Sources) error {
	vm := a.vm
	w, ok := a.Backend.(vmm.Warm)
	if !ok {
		return errNoSuspend
	}
	// Before the guest unmounts and freezes anything for a save that cannot happen.
	if err := w.CanSuspend(vm); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	key, err := w.StateKey(ctx, cfg)
	if err != nil {
		return err
	}
	settings, err := a.settingsHash()
	if err != nil {
		return err
	}
	resp, err := a.control(ctx, forward.ControlRequest{Op: forward.OpSuspend})
	if err == nil && resp.Error != "" {
		err = errors.New(resp.Error)
	}
	if err != nil {
		return fmt.Errorf("the guest could not prepare: %w", err)
	}
	dir, err := a.Dir.SavingStateDir()
	if err == nil {
		err = w.Suspend(ctx, vm, dir)
	}
	if err != nil {
		a.discardState(ctx, cfg)
		if _, rerr := a.control(ctx, forward.ControlRequest{Op: forward.OpResume, TimeNano: time.Now().UnixNano()}); rerr != nil {
			a.logf("resume the guest after the failed suspend: %v", rerr)
		}
		return err
	}
	// The VM is gone: from here a failure only costs the next start its warm path.
	saved := &machine.SavedState{SavedAt: time.Now().UTC(), Key: key, Settings: settings}
	if b, err := json.Marshal(forwards); err == nil {
		saved.Forwards = b
	}
	for _, f := range w.DiskFiles(cfg) {
		p, err := machine.Fingerprint(f)
		if err != nil {
			a.discardState(ctx, cfg)
			return fmt.Errorf("%w: fingerprint %s: %v", errSuspendedUnsaved, f, err)
		}
		saved.Disks = append(saved.Disks, p)
	}
	if err := a.Dir.CommitSavedState(saved); err != nil {
		a.discardState(ctx, cfg)
		return fmt.Errorf("%w: %v", errSuspendedUnsaved, err)
	}
	return nil
}

// errSuspendedUnsaved: the VM stopped but its state could not be kept; the disk was
// frozen clean, so the next start is an ordinary cold boot.
var errSuspendedUnsaved = errors.New("the VM stopped but its saved state was not kept")

func (a *Agent) setBoot(b agentapi.Boot) {
	a.mu.Lock()
	a.boot = &b
	a.mu.Unlock()
	if b.Warm {
		a.logf("warm start: resumed from the saved state")
	} else if b.Reason != "" {
		a.warn("cold boot: %s", b.Reason)
	}
}

// withStream adds to a guest operation's steps, which run side by side, what the longest
// leaves of its total: the stream to the guest and back.
func withStream(total time.Duration, steps []forward.Step) []forward.Step {
	var guest time.Duration
	for _, s := range steps {
		guest = max(guest, s.Duration())
	}
	return append(slices.Clone(steps), stepOf("stream and round trip", total-guest))
}

func stepOf(name string, d time.Duration) forward.Step {
	return forward.Step{Name: name, Micros: d.Microseconds()}
}
