package qemu

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/skiff-dev/skiff/images"
	"github.com/skiff-dev/skiff/vmm"
)

// BootMode says how the guest starts.
type BootMode int

const (
	// BootDirect boots the image's kernel and initrd with the configured command line
	// (qboot on x86, no bootloader); each disk is a virtio-blk device with its serial.
	BootDirect BootMode = iota
	// BootHyperV boots what a Hyper-V Generation 2 VM boots (vmm/hyperv), byte for byte:
	// the image's EFI boot disk under OVMF, UEFI firmware for q35, with every disk a LUN
	// of one virtio-scsi controller in vmm/hyperv's order (the boot disk at LUN 0, then
	// cfg.Disks) and no serials, so that the guest finds its disks by LUN as on Hyper-V.
	// The console is ttyS0, Hyper-V's COM1. The command line is the one the boot disk's
	// unified kernel image carries: cfg.Cmdline (and so SKIFF_KERNEL_ARGS) does not apply,
	// as on Hyper-V. The NIC, shares and balloon stay virtio: this checks the boot path,
	// not the VMBus devices, which only Hyper-V has.
	BootHyperV
)

// HyperVBoot tunes BootHyperV.
type HyperVBoot struct {
	// Disk is the EFI boot disk; default vmm.EFIBootDisk next to the kernel. A .vhdx file
	// is attached as VHDX, the format vmm/hyperv converts the disk to.
	Disk string
	// Code and Vars are OVMF's firmware and the template of its variable store (each VM
	// gets its own copy); default the first pair of ovmfPaths that exists.
	Code, Vars string
}

// ovmfPaths are OVMF builds without Secure Boot (Hyper-V's is switched off for the unsigned
// image), as code and variable-store template, where distributions install them.
var ovmfPaths = [][2]string{
	{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"},     // Debian, Ubuntu
	{"/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"}, // Fedora
	{"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"},
}

// varsFile is the VM's own UEFI variable store, which the firmware writes to (boot
// entries), in the machine directory as Hyper-V keeps one per VM.
const varsFile = "uefi-vars.fd"

func (b *Backend) bootDisk(cfg vmm.Config) string {
	if b.HyperV.Disk != "" {
		return b.HyperV.Disk
	}
	return filepath.Join(filepath.Dir(cfg.Kernel), vmm.EFIBootDisk)
}

func (b *Backend) firmware() (code, vars string, err error) {
	if b.HyperV.Code != "" {
		return b.HyperV.Code, b.HyperV.Vars, nil
	}
	for _, p := range ovmfPaths {
		if _, err := os.Stat(p[0]); err == nil {
			return p[0], p[1], nil
		}
	}
	return "", "", errors.New("no OVMF firmware for the Hyper-V boot: install it (Debian/Ubuntu: apt-get install ovmf)")
}

// ImageRoles implements vmm.ImageChecker.
func (b *Backend) ImageRoles() []string {
	if b.Boot == BootHyperV {
		return []string{images.RoleEFIBoot}
	}
	return nil
}

// CheckImageDir implements vmm.ImageChecker: BootHyperV needs the image's EFI boot disk.
func (b *Backend) CheckImageDir(dir string) error {
	if b.Boot != BootHyperV || b.HyperV.Disk != "" {
		return nil
	}
	return vmm.CheckEFIBootDisk(filepath.Join(dir, vmm.EFIBootDisk))
}

// prepareBoot checks what the boot mode needs beyond the kernel and initrd and makes the
// VM's variable store on its first boot (later boots keep what the firmware wrote).
func (b *Backend) prepareBoot(cfg vmm.Config) error {
	if b.Boot != BootHyperV {
		return nil
	}
	if cfg.Arch == "arm64" {
		return errors.New("qemu: the Hyper-V boot disk is built for amd64 only")
	}
	if err := vmm.CheckEFIBootDisk(b.bootDisk(cfg)); err != nil {
		return fmt.Errorf("qemu: %w", err)
	}
	_, tmpl, err := b.firmware()
	if err != nil {
		return fmt.Errorf("qemu: %w", err)
	}
	vars := filepath.Join(cfg.Dir, varsFile)
	if _, err := os.Stat(vars); err == nil {
		return nil
	}
	if err := copyFile(tmpl, vars); err != nil {
		return fmt.Errorf("qemu: UEFI variable store: %w", err)
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(tmp)
		return err
	}
	if err := out.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, dst)
}

// hypervBootArgs replace direct boot's -kernel, -initrd, -append and -bios: OVMF in
// flash, read-only code and the VM's own variables.
func (b *Backend) hypervBootArgs(cfg vmm.Config) []string {
	code, _, _ := b.firmware() // prepareBoot has checked it
	return []string{
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + qemuEscape(code),
		"-drive", "if=pflash,format=raw,unit=1,file=" + qemuEscape(filepath.Join(cfg.Dir, varsFile)),
	}
}

// hypervDiskArgs attach the boot disk and cfg.Disks as LUNs 0, 1, ... of one virtio-scsi
// controller, the order vmm/hyperv attaches them in; the firmware boots LUN 0.
func (b *Backend) hypervDiskArgs(cfg vmm.Config) []string {
	boot := vmm.Disk{Path: b.bootDisk(cfg), ReadOnly: true} // shared by every machine of the image
	disks := append([]vmm.Disk{boot}, cfg.Disks...)
	a := []string{"-device", "virtio-scsi-pci,id=scsi0"}
	for i, d := range disks {
		format := "raw"
		if strings.EqualFold(filepath.Ext(d.Path), ".vhdx") {
			format = "vhdx"
		}
		dev := fmt.Sprintf("scsi-hd,bus=scsi0.0,channel=0,scsi-id=0,lun=%d,drive=disk%d", i, i)
		if i == 0 {
			dev += ",bootindex=0"
		}
		a = append(a, "-drive", driveArg(i, d, format), "-device", dev)
	}
	return a
}
