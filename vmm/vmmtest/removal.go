package vmmtest

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/vmm"
)

// RemovalHarness adapts a backend whose artifacts live outside the machine directory (a
// WSL distro, a Hyper-V VM) to Removal.
type RemovalHarness struct {
	Backend vmm.Backend
	// Config completes a machine's config for a start: image files, disks, network.
	Config func(t *testing.T, base vmm.Config) vmm.Config
	// Exists says whether the (simulated) host has the backend's artifact for the machine.
	Exists func(name string) bool
	// Foreign gives the host an artifact for the machine that the backend did not make.
	Foreign func(name string)
}

// Removal checks that `machine rm` takes what the backend made with the machine, so that
// init -> start -> rm -> init of the same name works, and that it never takes what the
// backend did not make: the removal warns and leaves it.
func Removal(t *testing.T, h RemovalHarness) {
	ctx := context.Background()
	home := machine.Home{Root: TempDir(t)}
	start := func(name string) (*machine.Spec, error) {
		t.Helper()
		spec := &machine.Spec{SchemaVersion: 1, Name: name, Backend: h.Backend.Name(), CPUs: 2, MemoryMiB: 2048, DiskGiB: 1, Engine: machine.EngineDocker}
		if err := home.Create(spec); err != nil {
			t.Fatalf("init %s: %v", name, err)
		}
		vm, err := h.Backend.Start(ctx, h.Config(t, home.Dir(name).VMConfig(spec)))
		if err == nil {
			err = vm.Kill(ctx)
		}
		return spec, err
	}
	for round := 1; round <= 2; round++ {
		if _, err := start("dev"); err != nil {
			t.Fatalf("start %d of machine dev: %v", round, err)
		}
		if !h.Exists("dev") {
			t.Fatalf("start %d made no %s artifact for machine dev", round, h.Backend.Name())
		}
		if err := home.Remove(ctx, "dev", machine.RemoveOptions{Backend: h.Backend}); err != nil {
			t.Fatalf("rm %d: %v", round, err)
		}
		if h.Exists("dev") {
			t.Fatalf("rm %d left the %s artifact of machine dev", round, h.Backend.Name())
		}
		if _, err := os.Stat(home.Dir("dev").Path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("rm %d left the machine directory: %v", round, err)
		}
	}

	h.Foreign("other")
	if _, err := start("other"); err == nil {
		t.Fatal("a machine started on an artifact its backend did not make")
	}
	var warned []string
	if err := home.Remove(ctx, "other", machine.RemoveOptions{Backend: h.Backend, Warn: func(s string) { warned = append(warned, s) }}); err != nil {
		t.Fatalf("rm of a machine whose name another artifact has: %v", err)
	}
	if !h.Exists("other") {
		t.Fatal("rm removed an artifact its backend did not make")
	}
	if len(warned) != 1 || !strings.Contains(warned[0], vmm.ErrNotOwned.Error()) {
		t.Fatalf("rm warned %q; want one warning that the artifact was left in place", warned)
	}
	if home.Dir("other").Exists() {
		t.Fatal("rm left the machine")
	}
}
