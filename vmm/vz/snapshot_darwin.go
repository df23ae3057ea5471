package vz

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/skiff-dev/skiff/vmm"
)

// hostOS is the macOS product version ("14.2.1") and build ("23C71"), read where vz reads them.
func hostOS() (version, build string, err error) {
	if version, err = unix.Sysctl("kern.osproductversion"); err != nil {
		return "", "", fmt.Errorf("vz: macOS version: %w", err)
	}
	if build, err = unix.Sysctl("kern.osversion"); err != nil {
		return "", "", fmt.Errorf("vz: macOS build: %w", err)
	}
	return version, build, nil
}

// warmHere checks that this Mac can save and restore. It must run before any vz
// save/restore call: on macOS 13 some of them raise an Objective-C exception instead of
// returning an error.
func warmHere() error {
	v, _, err := hostOS()
	if err != nil {
		return err
	}
	return checkWarm(runtime.GOARCH, v)
}

// StateKey implements vmm.Warm.
func (b *Backend) StateKey(ctx context.Context, cfg vmm.Config) (string, error) {
	v, build, err := hostOS()
	if err != nil {
		return "", err
	}
	if err := checkWarm(runtime.GOARCH, v); err != nil {
		return "", err
	}
	s, _ := b.hostShape(cfg)
	return stateKey(s, v, build), nil
}

// Restore implements vmm.Warm: the VM is built as Start builds it, loads the saved
// state (which leaves it paused) and resumes.
func (b *Backend) Restore(ctx context.Context, cfg vmm.Config, dir string) (vmm.VM, error) {
	if err := warmHere(); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, stateFile)
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("vz: saved state: %w", err)
	}
	m, err := b.newMachine(cfg)
	if err != nil {
		return nil, err
	}
	if err := restoreState(m.vm, path); err != nil {
		m.abandon()
		return nil, fmt.Errorf("vz: restore %s: %w", path, err)
	}
	if err := m.vm.Resume(); err != nil {
		m.abandon()
		return nil, fmt.Errorf("vz: resume the restored VM: %w", err)
	}
	return m, nil
}

// CanSuspend implements vmm.Warm: the Mac must have save and restore (warmHere).
func (b *Backend) CanSuspend(vm vmm.VM) error {
	if _, err := vmm.Own[*machine]("vz", vm); err != nil {
		return err
	}
	return warmHere()
}

// Suspend implements vmm.Warm: pause, save into dir, stop. vz flushes the disks before a
// save completes; a paused VM writes nothing more.
func (b *Backend) Suspend(ctx context.Context, vm vmm.VM, dir string) error {
	m, err := vmm.Own[*machine]("vz", vm)
	if err != nil {
		return err
	}
	if err := warmHere(); err != nil {
		return err
	}
	if !m.vm.CanPause() {
		return fmt.Errorf("vz: the VM cannot be paused in state %v", m.vm.State())
	}
	if err := m.vm.Pause(); err != nil {
		return fmt.Errorf("vz: pause: %w", err)
	}
	if err := saveState(m.vm, filepath.Join(dir, stateFile)); err != nil {
		return m.resumeAfter(fmt.Errorf("vz: save state: %w", err))
	}
	if err := m.vm.Stop(); err != nil {
		return m.resumeAfter(fmt.Errorf("vz: stop after saving: %w", err))
	}
	// Stop completed: the VM is gone even if its state notification is still on the way.
	m.finish(nil)
	return nil
}

// resumeAfter lets a paused VM run on after a failed suspend, as Suspend promises.
func (m *machine) resumeAfter(err error) error {
	if rerr := m.vm.Resume(); rerr != nil {
		return errors.Join(err, fmt.Errorf("vz: the VM stays paused: %w", rerr))
	}
	return err
}
