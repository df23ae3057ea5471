package main

import (
	"fmt"

	"github.com/skiff-dev/skiff/vmm"
	"github.com/skiff-dev/skiff/vmm/hyperv"
	"github.com/skiff-dev/skiff/vmm/qemu"
	"github.com/skiff-dev/skiff/vmm/wsl2"
)

func defaultBackend() string { return "wsl2" }

func backendFor(name string) (vmm.Backend, error) {
	switch name {
	case "wsl2", "":
		return wsl2.New(wsl2.Options{}), nil
	case "hyperv":
		return hyperv.New(hyperv.Options{}), nil
	case "qemu":
		return &qemu.Backend{}, nil
	}
	return nil, fmt.Errorf("backend %q is not available on Windows (use wsl2, hyperv or qemu)", name)
}
