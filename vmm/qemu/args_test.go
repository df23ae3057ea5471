package qemu

import (
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/vmm"
)

func TestArgs(t *testing.T) {
	cfg := vmm.Config{Name: "m1", Arch: "amd64", CPUs: 3, MemoryMiB: 1536, Kernel: "/img/vmlinuz", Initrd: "/img/initrd.img",
		Cmdline: "console=ttyS0", MAC: "5a:94:ef:e4:0c:ee", SerialLog: "/d/serial.log",
		Disks:  []vmm.Disk{{Path: "/img/root,1.squashfs", Serial: "skiff-root", ReadOnly: true}, {Path: "/d/data.img", Serial: "skiff-data", Discard: true}},
		Shares: []vmm.Share{{Tag: "skiff0", HostPath: "/home/u", ReadOnly: true}}}
	args := strings.Join((&Backend{}).Args(cfg, "tcg", "/r/net.sock", "/r/qmp.sock", "/d/vm.pid"), " ")
	for _, want := range []string{
		"-smp 3", "-m 1536M", "-kernel /img/vmlinuz", "-accel tcg,thread=multi",
		"file=/img/root,,1.squashfs,format=raw", // commas in paths are escaped
		"readonly=on -device virtio-blk-pci,drive=disk0,serial=skiff-root",
		"discard=unmap,detect-zeroes=unmap -device virtio-blk-pci,drive=disk1,serial=skiff-data",
		"-netdev stream,id=net0,server=off,addr.type=unix,addr.path=/r/net.sock",
		"mac=5a:94:ef:e4:0c:ee", "path=/home/u,security_model=none", "readonly=on -device virtio-9p-pci,fsdev=fs0,mount_tag=skiff0",
		"-qmp unix:/r/qmp.sock,server=on,wait=off", "-pidfile /d/vm.pid", "-no-reboot",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("QEMU arguments lack %q:\n%s", want, args)
		}
	}
	if strings.Contains(args, "discard=unmap -device virtio-blk-pci,drive=disk0") {
		t.Error("the read-only root got discard")
	}
	kvm := strings.Join((&Backend{}).Args(cfg, "kvm", "n", "q", "p"), " ")
	if !strings.Contains(kvm, "-cpu host") || !strings.Contains(kvm, "-accel kvm") {
		t.Errorf("kvm arguments: %s", kvm)
	}
}

func TestForcedAccel(t *testing.T) {
	b := &Backend{Accel: "tcg"}
	if a, why := b.ChooseAccel("amd64", ""); a != "tcg" || !strings.Contains(why, "forced") {
		t.Fatalf("forced accel: %s (%s)", a, why)
	}
	if a, _ := (&Backend{}).ChooseAccel("other-arch", ""); a != "tcg" {
		t.Fatalf("a foreign guest architecture must use tcg, got %s", a)
	}
}
