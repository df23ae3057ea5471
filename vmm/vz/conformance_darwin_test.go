package vz

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/forward/usernet"
	"github.com/skiff-dev/skiff/vmm"
	"github.com/skiff-dev/skiff/vmm/vmmtest"
)

// TestConformance boots real VMs; it runs only on a Mac, from a test binary signed with
// vz.entitlements (see vmm/PLATFORMS.md), given an arm64 image:
//
//	SKIFF_VZ_KERNEL=.../Image SKIFF_VZ_INITRD=.../initrd SKIFF_VZ_ROOT=.../root.img
//
// SKIFF_VZ_AGENT_PORT, if set, makes GuestUp wait until that vsock port accepts, and
// runs SuspendRestore (macOS 14+ on Apple silicon), whose Alive dials it again.
func TestConformance(t *testing.T) {
	kernel, initrd, root := os.Getenv("SKIFF_VZ_KERNEL"), os.Getenv("SKIFF_VZ_INITRD"), os.Getenv("SKIFF_VZ_ROOT")
	if kernel == "" || initrd == "" || root == "" {
		t.Skip("set SKIFF_VZ_KERNEL, SKIFF_VZ_INITRD and SKIFF_VZ_ROOT to run the vz conformance suite")
	}
	h := vmmtest.Harness{
		Backend: New(Options{}),
		Config: func(t *testing.T) vmm.Config {
			dir := vmmtest.TempDir(t)
			n, err := usernet.New(usernet.Options{Secret: make([]byte, 32)})
			if err != nil {
				t.Fatal(err)
			}
			return vmm.Config{
				Name: "conformance", Dir: dir, RunDir: dir, Arch: "arm64",
				CPUs: 2, MemoryMiB: 1024,
				Kernel: kernel, Initrd: initrd,
				Cmdline:   "console=hvc0 quiet",
				Disks:     []vmm.Disk{{Path: root, Serial: "skiff-root", ReadOnly: true}},
				Shares:    []vmm.Share{{Tag: "home", HostPath: t.TempDir(), ReadOnly: true}},
				SerialLog: filepath.Join(dir, "serial.log"),
				Network:   n,
				MAC:       usernet.GuestMAC,
			}
		},
		BootTimeout: 2 * time.Minute,
	}
	if p := os.Getenv("SKIFF_VZ_AGENT_PORT"); p != "" {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			t.Fatalf("SKIFF_VZ_AGENT_PORT: %v", err)
		}
		port := uint32(n)
		h.GuestUp = func(ctx context.Context, t *testing.T, cfg vmm.Config, vm vmm.VM) error {
			return dialUntil(ctx, vm, port)
		}
		if err := warmHere(); err != nil {
			t.Logf("SuspendRestore is skipped: %v", err)
		} else {
			// A restored guest's listener is back without a boot: the port accepts within seconds.
			h.Alive = func(ctx context.Context, t *testing.T, cfg vmm.Config, vm vmm.VM) error {
				ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
				defer cancel()
				return dialUntil(ctx, vm, port)
			}
		}
	} else {
		t.Log("SKIFF_VZ_AGENT_PORT unset: SuspendRestore is skipped (it needs a guest that answers)")
	}
	vmmtest.Run(t, h)
}

// dialUntil waits until the guest accepts on a vsock port.
func dialUntil(ctx context.Context, vm vmm.VM, port uint32) error {
	for {
		c, err := vm.(vmm.GuestDialer).DialGuest(ctx, port)
		if err == nil {
			return c.Close()
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}
