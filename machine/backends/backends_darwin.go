//go:build cgo

// vz is cgo over Virtualization.framework: a macOS build with cgo has it, one without
// (a cross build) has only qemu (backends_darwin_nocgo.go).

package backends

import (
	"github.com/skiff-dev/skiff/vmm"
	"github.com/skiff-dev/skiff/vmm/qemu"
	"github.com/skiff-dev/skiff/vmm/vz"
)

const (
	defaultName = "vz"
	hint        = "use vz or qemu"
)

func lookup(name string) vmm.Backend {
	switch name {
	case "vz", "":
		return vz.New(vz.Options{})
	case "qemu":
		return &qemu.Backend{}
	}
	return nil
}
