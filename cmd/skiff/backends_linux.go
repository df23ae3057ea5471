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
	case "qemu-vz": // vz's guest devices (virtio console, datagram NIC) on QEMU, for testing on Linux
		return &qemu.Backend{VZDevices: true}, nil
	case "qemu-hyperv": // the Hyper-V boot artifacts under QEMU+OVMF, for testing on Linux
		return &qemu.Backend{Boot: qemu.BootHyperV}, nil
	case "qemu-wsl": // WSL's root filesystem and boot-wsl under a stand-in init on QEMU, for testing on Linux
		return &qemu.WSLStandIn{}, nil
	}
	return nil, fmt.Errorf("backend %q is not available on Linux (use qemu; qemu-hyperv and qemu-wsl test Hyper-V's boot disk and WSL's root filesystem)", name)
}
