package qemu

import (
	"errors"
	"testing"

	"github.com/skiff-dev/skiff/vmm"
)

func TestBalloonArg(t *testing.T) {
	for in, want := range map[string]string{
		vmm.ReclaimAuto:    "virtio-balloon-pci,id=balloon0,free-page-reporting=on",
		vmm.ReclaimBalloon: "virtio-balloon-pci,id=balloon0",
		vmm.ReclaimOff:     "virtio-balloon-pci,id=balloon0",
	} {
		if got := balloonArg(vmm.Config{Reclaim: in}); got != want {
			t.Errorf("reclaim %q: %s, want %s", in, got, want)
		}
	}
	if _, err := reclaimOf(vmm.Config{Reclaim: vmm.ReclaimDynamicMemory}); !errors.Is(err, vmm.ErrNotSupported) {
		t.Errorf("dynamic memory on QEMU: %v", err)
	}
}
