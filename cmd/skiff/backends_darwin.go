package main

import (
	"fmt"

	"github.com/skiff-dev/skiff/vmm"
	"github.com/skiff-dev/skiff/vmm/qemu"
	"github.com/skiff-dev/skiff/vmm/vz"
)

func defaultBackend() string { return "vz" }

func backendFor(name string) (vmm.Backend, error) {
	switch name {
	case "vz", "":
		return vz.New(vz.Options{}), nil
	case "qemu":
		return &qemu.Backend{}, nil
	}
	return nil, fmt.Errorf("backend %q is not available on macOS (use vz or qemu)", name)
}
