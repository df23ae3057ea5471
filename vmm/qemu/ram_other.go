//go:build !linux

package qemu

import (
	"fmt"
	"os"

	"github.com/skiff-dev/skiff/vmm"
)

// Elsewhere guest RAM is QEMU's own, and a suspend saves it in the migration stream.
const sharedRAM = false

const ramPath = ""

func newRAM(mib int64) (*os.File, error) {
	return nil, fmt.Errorf("qemu: shared guest memory: %w", vmm.ErrNotSupported)
}

func saveRAM(dst, ram *os.File, size int64) error {
	return fmt.Errorf("qemu: save guest memory: %w", vmm.ErrNotSupported)
}

func loadRAM(ram, src *os.File, size int64) error {
	return fmt.Errorf("qemu: load guest memory: %w", vmm.ErrNotSupported)
}
