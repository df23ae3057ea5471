package qemu

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/vmm"
)

func hypervCfg(img, dir string) vmm.Config {
	return vmm.Config{Name: "m1", Dir: dir, Arch: "amd64", CPUs: 2, MemoryMiB: 1024,
		Kernel: filepath.Join(img, "vmlinuz"), Initrd: filepath.Join(img, "initrd.img"), Cmdline: "console=ttyS0",
		MAC: "5a:94:ef:e4:0c:ee", SerialLog: filepath.Join(dir, "serial.log"),
		Disks: []vmm.Disk{
			{Path: filepath.Join(img, "root.squashfs"), Serial: "skiff-root", ReadOnly: true},
			{Path: filepath.Join(dir, "data.img"), Serial: "skiff-data", Discard: true},
			{Path: filepath.Join(dir, "seed.img"), Serial: "skiff-seed", ReadOnly: true},
		}}
}

// TestArgsHyperVBoot: the boot disk and cfg.Disks are LUNs 0..3 of one virtio-scsi
// controller in vmm/hyperv's order, without serials; OVMF replaces the direct boot.
func TestArgsHyperVBoot(t *testing.T) {
	b := &Backend{Boot: BootHyperV, HyperV: HyperVBoot{Code: "/fw/code.fd", Vars: "/fw/vars.fd"}}
	args := strings.Join(b.Args(hypervCfg("/img", "/d"), "tcg", "/r/net.sock", "/r/qmp.sock", "/d/vm.pid"), " ")
	for _, want := range []string{
		"-drive if=pflash,format=raw,unit=0,readonly=on,file=/fw/code.fd",
		"-drive if=pflash,format=raw,unit=1,file=/d/uefi-vars.fd",
		"-device virtio-scsi-pci,id=scsi0",
		"file=/img/efi-boot.img,format=raw,cache=writeback,aio=threads,readonly=on -device scsi-hd,bus=scsi0.0,channel=0,scsi-id=0,lun=0,drive=disk0,bootindex=0",
		"file=/img/root.squashfs,format=raw,cache=writeback,aio=threads,readonly=on -device scsi-hd,bus=scsi0.0,channel=0,scsi-id=0,lun=1,drive=disk1 ",
		"file=/d/data.img,format=raw,cache=writeback,aio=threads,discard=unmap,detect-zeroes=unmap -device scsi-hd,bus=scsi0.0,channel=0,scsi-id=0,lun=2,drive=disk2 ",
		"file=/d/seed.img,format=raw,cache=writeback,aio=threads,readonly=on -device scsi-hd,bus=scsi0.0,channel=0,scsi-id=0,lun=3,drive=disk3 ",
		"-chardev file,id=serial0,path=/d/serial.log -serial chardev:serial0", // COM1
	} {
		if !strings.Contains(args, want) {
			t.Errorf("QEMU arguments lack %q:\n%s", want, args)
		}
	}
	for _, bad := range []string{"-kernel", "-initrd", "-append", "-bios", "virtio-blk", "serial=skiff"} {
		if strings.Contains(args, bad) {
			t.Errorf("the Hyper-V boot has %q:\n%s", bad, args)
		}
	}
	// Only the boot disk is a boot device.
	if n := len(regexp.MustCompile(`bootindex=`).FindAllString(args, -1)); n != 1 {
		t.Errorf("%d disks carry a bootindex, want the boot disk's alone:\n%s", n, args)
	}

	b.HyperV.Disk = "/conv/efi-boot.VHDX"
	args = strings.Join(b.Args(hypervCfg("/img", "/d"), "tcg", "n", "q", "p"), " ")
	if !strings.Contains(args, "file=/conv/efi-boot.VHDX,format=vhdx,") {
		t.Errorf("a VHDX boot disk is not attached as VHDX:\n%s", args)
	}

	// The direct boot is untouched by the mode's fields until it is chosen.
	direct := strings.Join((&Backend{HyperV: b.HyperV}).Args(hypervCfg("/img", "/d"), "tcg", "n", "q", "p"), " ")
	if !strings.Contains(direct, "-kernel /img/vmlinuz") || strings.Contains(direct, "scsi") || strings.Contains(direct, "pflash") {
		t.Errorf("direct boot arguments: %s", direct)
	}
}

// TestPrepareHyperVBoot: an image without the boot disk fails in one line naming the
// file and how to get it, before QEMU runs; the variable store is the VM's own copy,
// made once and then kept (the firmware writes its boot entries there).
func TestPrepareHyperVBoot(t *testing.T) {
	img, dir := t.TempDir(), t.TempDir()
	vars := filepath.Join(t.TempDir(), "vars.fd")
	os.WriteFile(vars, []byte("template"), 0o644)
	b := &Backend{Boot: BootHyperV, HyperV: HyperVBoot{Code: "/fw/code.fd", Vars: vars}}
	cfg := hypervCfg(img, dir)
	for _, err := range []error{b.prepareBoot(cfg), b.CheckImageDir(img)} {
		if err == nil || !strings.Contains(err.Error(), "efi-boot.img") || !strings.Contains(err.Error(), "make image") || strings.Contains(err.Error(), "\n") {
			t.Errorf("an image without efi-boot.img: %v; want one line naming it and how to get it", err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, varsFile)); err == nil {
		t.Error("a failed start left a variable store behind")
	}
	if err := (&Backend{}).CheckImageDir(img); err != nil {
		t.Errorf("the direct boot asked for the EFI boot disk: %v", err)
	}

	os.WriteFile(filepath.Join(img, vmm.EFIBootDisk), []byte("disk"), 0o644)
	if err := b.CheckImageDir(img); err != nil {
		t.Fatal(err)
	}
	if err := b.prepareBoot(cfg); err != nil {
		t.Fatal(err)
	}
	own := filepath.Join(dir, varsFile)
	if got, _ := os.ReadFile(own); string(got) != "template" {
		t.Fatalf("variable store %q, want the template's copy", got)
	}
	os.WriteFile(own, []byte("written by the firmware"), 0o600)
	if err := b.prepareBoot(cfg); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(own); string(got) != "written by the firmware" {
		t.Fatalf("a second boot reset the VM's variable store to %q", got)
	}
}
