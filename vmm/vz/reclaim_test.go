package vz

import (
	"errors"
	"testing"

	"github.com/skiff-dev/skiff/vmm"
)

// vz returns memory only through the balloon the host agent drives.
func TestReclaimOf(t *testing.T) {
	for in, want := range map[string]string{vmm.ReclaimAuto: vmm.ReclaimBalloon, vmm.ReclaimBalloon: vmm.ReclaimBalloon, vmm.ReclaimOff: vmm.ReclaimOff} {
		if got, err := reclaimOf(vmm.Config{Reclaim: in}); got != want || err != nil {
			t.Errorf("reclaim %q: %q, %v; want %q", in, got, err, want)
		}
	}
	for _, r := range []string{vmm.ReclaimFreePageReporting, vmm.ReclaimDynamicMemory} {
		if _, err := reclaimOf(vmm.Config{Reclaim: r}); !errors.Is(err, vmm.ErrNotSupported) {
			t.Errorf("reclaim %q: %v, want ErrNotSupported", r, err)
		}
	}
}
