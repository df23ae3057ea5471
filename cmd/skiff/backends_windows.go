package main

import (
	"fmt"

	"github.com/skiff-dev/skiff/vmm"
	"github.com/skiff-dev/skiff/vmm/qemu"
)

func defaultBackend() string { return "qemu" }

func backendFor(name string) (vmm.Backend, error) {
	switch name {
	case "qemu", "":
		return &qemu.Backend{}, nil
	}
	return nil, fmt.Errorf("backend %q is not available on Windows yet (use qemu)", name)
}
