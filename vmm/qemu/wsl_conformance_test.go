package qemu

import (
	"testing"

	"github.com/skiff-dev/skiff/machine/machinetest"
	"github.com/skiff-dev/skiff/vmm/vmmtest"
)

// TestConformanceWSLStandIn runs the suite on backend qemu-wsl: the image's
// wsl-rootfs.tar and boot-wsl under the WSL stand-in's init.
func TestConformanceWSLStandIn(t *testing.T) {
	machinetest.Enabled(t)
	vmmtest.Run(t, conformance(t, &WSLStandIn{Init: machinetest.BuildWSLInit(t)}))
}
