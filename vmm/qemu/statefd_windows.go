package qemu

import (
	"fmt"
	"os"

	"github.com/skiff-dev/skiff/vmm"
)

// QMP on Windows carries no descriptors, so QEMU on Windows boots cold only.
func (q *qmp) sendFD(name string, f *os.File) error {
	return fmt.Errorf("qemu: suspend on Windows: %w", vmm.ErrNotSupported)
}
