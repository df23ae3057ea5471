package hyperv

import (
	"errors"
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/vmm"
)

func TestMemoryScript(t *testing.T) {
	cfg := vmm.Config{MemoryMiB: 4096}
	if got := memoryScript("'vm'", cfg); !strings.Contains(got, "-DynamicMemoryEnabled $true -MinimumBytes 512MB -StartupBytes 4096MB -MaximumBytes 4096MB") {
		t.Errorf("default: %s", got)
	}
	cfg.Reclaim = vmm.ReclaimOff
	if got := memoryScript("'vm'", cfg); !strings.Contains(got, "-DynamicMemoryEnabled $false -StartupBytes 4096MB") {
		t.Errorf("off: %s", got)
	}
	small := vmm.Config{MemoryMiB: 384}
	if got := memoryScript("'vm'", small); !strings.Contains(got, "-MinimumBytes 384MB") {
		t.Errorf("a machine smaller than the floor: %s", got)
	}
	for _, r := range []string{vmm.ReclaimBalloon, vmm.ReclaimFreePageReporting, "nonsense"} {
		if _, err := reclaimOf(vmm.Config{Reclaim: r}); !errors.Is(err, vmm.ErrNotSupported) {
			t.Errorf("reclaim %q: %v, want ErrNotSupported", r, err)
		}
	}
}
