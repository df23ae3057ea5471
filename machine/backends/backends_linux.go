package backends

import (
	"github.com/skiff-dev/skiff/vmm"
	"github.com/skiff-dev/skiff/vmm/qemu"
)

const (
	defaultName = "qemu"
	hint        = "use qemu; qemu-vz, qemu-hyperv and qemu-wsl test vz's devices, Hyper-V's boot disk and WSL's root filesystem"
)

func lookup(name string) vmm.Backend {
	switch name {
	case "qemu", "":
		return &qemu.Backend{}
	case "qemu-vz": // vz's guest devices (virtio console, datagram NIC) on QEMU, for testing on Linux
		return &qemu.Backend{VZDevices: true}
	case "qemu-hyperv": // the Hyper-V boot artifacts under QEMU+OVMF, for testing on Linux
		return &qemu.Backend{Boot: qemu.BootHyperV}
	case "qemu-wsl": // WSL's root filesystem and boot-wsl under a stand-in init on QEMU, for testing on Linux
		return &qemu.WSLStandIn{}
	}
	return nil
}
