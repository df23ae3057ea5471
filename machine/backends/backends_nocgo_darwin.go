//go:build !cgo

package backends

import (
	"github.com/skiff-dev/skiff/vmm"
	"github.com/skiff-dev/skiff/vmm/qemu"
)

// A macOS build without cgo (cross-built on Linux, where the macOS SDK that vz's cgo needs
// is absent) cannot have vz: it runs machines under QEMU, and says why vz is missing.
const (
	defaultName = "qemu"
	hint        = "this skiff was built without cgo, so it has no vz (build on macOS with CGO_ENABLED=1 for it); use qemu"
)

func lookup(name string) vmm.Backend {
	switch name {
	case "qemu", "":
		return &qemu.Backend{}
	}
	return nil
}
