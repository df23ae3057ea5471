//go:build !darwin

package vz

import (
	"context"
	"errors"

	"github.com/skiff-dev/skiff/vmm"
)

var errNotMac = errors.New("vz: the Apple Virtualization backend runs only on macOS; use --backend qemu here")

// Check implements vmm.Backend.
func (b *Backend) Check(ctx context.Context) error { return errNotMac }

// Start implements vmm.Backend.
func (b *Backend) Start(ctx context.Context, cfg vmm.Config) (vmm.VM, error) { return nil, errNotMac }

// StateKey implements vmm.Warm.
func (b *Backend) StateKey(ctx context.Context, cfg vmm.Config) (string, error) {
	return "", errNotMac
}

// CanSuspend implements vmm.Warm.
func (b *Backend) CanSuspend(vm vmm.VM) error { return errNotMac }

// Suspend implements vmm.Warm.
func (b *Backend) Suspend(ctx context.Context, vm vmm.VM, dir string) error { return errNotMac }

// Restore implements vmm.Warm.
func (b *Backend) Restore(ctx context.Context, cfg vmm.Config, dir string) (vmm.VM, error) {
	return nil, errNotMac
}
