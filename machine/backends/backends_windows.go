package backends

import (
	"github.com/skiff-dev/skiff/vmm"
	"github.com/skiff-dev/skiff/vmm/hyperv"
	"github.com/skiff-dev/skiff/vmm/qemu"
	"github.com/skiff-dev/skiff/vmm/wsl2"
)

const (
	defaultName = "wsl2"
	hint        = "use wsl2, hyperv or qemu"
)

func lookup(name string) vmm.Backend {
	switch name {
	case "wsl2", "":
		return wsl2.New(wsl2.Options{})
	case "hyperv":
		return hyperv.New(hyperv.Options{})
	case "qemu":
		return &qemu.Backend{}
	}
	return nil
}
