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

func copySparse(dst, src *os.File, size int64) error {
	return fmt.Errorf("qemu: sparse memory copy: %w", vmm.ErrNotSupported)
}
