package qemu

import (
	"strconv"
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
	if !strings.Contains(args, "-append console=ttyS0 init_on_alloc=0 ") {
		t.Errorf("an emulated guest boots without init_on_alloc=0:\n%s", args)
	}
	kvm := strings.Join((&Backend{}).Args(cfg, "kvm", "n", "q", "p"), " ")
	if !strings.Contains(kvm, "-cpu host") || !strings.Contains(kvm, "-accel kvm") {
		t.Errorf("kvm arguments: %s", kvm)
	}
	if !strings.Contains(kvm, "-append console=ttyS0 ") || strings.Contains(kvm, "init_on_alloc") {
		t.Errorf("a guest under KVM must keep the kernel's own command line: %s", kvm)
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

func TestArgsVirtiofs(t *testing.T) {
	cfg := vmm.Config{Name: "m1", Arch: "amd64", CPUs: 2, MemoryMiB: 1024, RunDir: "/r", Kernel: "/img/vmlinuz", Initrd: "/img/initrd.img",
		Shares: []vmm.Share{{Tag: "skiff0", HostPath: "/home/u", Type: "9p"}, {Tag: "skiff1", HostPath: "/src", Type: "virtiofs"}}}
	args := strings.Join((&Backend{}).Args(cfg, "tcg", "/r/net.sock", "/r/qmp.sock", "/d/vm.pid"), " ")
	for _, want := range []string{
		"-device virtio-9p-pci,fsdev=fs0,mount_tag=skiff0",
		"-chardev socket,id=vfs1,path=/r/vfs1.sock -device vhost-user-fs-pci,queue-size=1024,chardev=vfs1,tag=skiff1",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("QEMU arguments lack %q:\n%s", want, args)
		}
	}
	if strings.Contains(args, "fsdev=fs1") {
		t.Errorf("the virtiofs share also got a 9p device:\n%s", args)
	}
	// vhost-user reads guest memory from virtiofsd: it must be a shared mapping.
	if sharedRAM && !strings.Contains(args, "share=on") {
		t.Errorf("virtiofs without shared guest memory:\n%s", args)
	}
	if err := checkShares(cfg); sharedRAM != (err == nil) {
		t.Errorf("checkShares with shared RAM %v: %v", sharedRAM, err)
	}
	cfg.Shares[0].Type = "drvfs"
	if err := checkShares(cfg); err == nil || !strings.Contains(err.Error(), `"drvfs"`) {
		t.Errorf("an unsupported share type: %v", err)
	}
}

func TestVirtiofsdCommand(t *testing.T) {
	rw := vmm.Share{Tag: "skiff0", HostPath: "/a,b", Type: "virtiofs"}
	ro := vmm.Share{Tag: "skiff1", HostPath: "/ro dir", Type: "virtiofs", ReadOnly: true}
	c := virtiofsd{path: "/usr/lib/qemu/virtiofsd"}
	for _, tc := range []struct {
		name string
		d    virtiofsd
		sh   vmm.Share
		uid  int
		want string
	}{
		{"C, rw, root", c, rw, 0, `/usr/lib/qemu/virtiofsd --fd=3 -o source=/a\,b -o cache=auto -o sandbox=namespace -o announce_submounts`},
		{"C, ro, root: a read-only bind in a mount namespace", c, ro, 0,
			`unshare --mount -- sh -c ` + roBindScript + ` sh /ro dir /usr/lib/qemu/virtiofsd --fd=3 -o source=/ro dir -o cache=auto`},
		{"C, rw, user: root of a user namespace", c, rw, 1000,
			`unshare --user --map-root-user -- /usr/lib/qemu/virtiofsd --fd=3 -o source=/a\,b -o cache=auto -o sandbox=namespace -o announce_submounts --rlimit-nofile=0`},
		{"Rust with --readonly, ro, root", virtiofsd{path: "/usr/libexec/virtiofsd", rust: true, readOnly: true}, ro, 0,
			`/usr/libexec/virtiofsd --fd=3 --shared-dir /ro dir --cache auto --sandbox namespace --announce-submounts --readonly`},
		{"Rust without --readonly, ro, user", virtiofsd{path: "/v", rust: true}, ro, 1000,
			`unshare --user --map-root-user --mount -- sh -c ` + roBindScript + ` sh /ro dir /v --fd=3 --shared-dir /ro dir`},
	} {
		t.Setenv(VirtiofsdArgsEnv, "")
		got := strings.Join(tc.d.command(tc.sh, tc.uid), " ")
		if !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s:\n got %s\nwant %s...", tc.name, got, tc.want)
		}
		if tc.d.rust && strings.Contains(got, "--readonly") != (tc.sh.ReadOnly && tc.d.readOnly) {
			t.Errorf("%s: --readonly misplaced: %s", tc.name, got)
		}
	}
}

// With vz's devices the guest's console is a virtio console named on the command line in
// place of the image's UART, and the NIC takes one frame per datagram on the inherited
// descriptor after the guest RAM's.
func TestArgsVZDevices(t *testing.T) {
	cfg := vmm.Config{Name: "m1", Arch: "arm64", CPUs: 2, MemoryMiB: 1024, Kernel: "/img/Image", Initrd: "/img/initrd.img",
		Cmdline: "console=ttyAMA0 quiet", MAC: "5a:94:ef:e4:0c:ee", SerialLog: "/d/serial.log"}
	args := strings.Join((&Backend{VZDevices: true}).Args(cfg, "tcg", "/r/net.sock", "/r/qmp.sock", "/d/vm.pid"), " ")
	for _, want := range []string{
		"-append console=hvc0 quiet",
		"-chardev file,id=serial0,path=/d/serial.log -device virtio-serial-pci,id=vser0 -device virtconsole,chardev=serial0",
		"-netdev dgram,id=net0,local.type=fd,local.str=" + strconv.Itoa(dgramFD()),
	} {
		if !strings.Contains(args, want) {
			t.Errorf("QEMU arguments lack %q:\n%s", want, args)
		}
	}
	for _, not := range []string{"ttyAMA0", " -serial ", "net.sock"} {
		if strings.Contains(args, not) {
			t.Errorf("QEMU arguments with vz's devices still have %q:\n%s", not, args)
		}
	}
}

func TestArgsNetworkGroup(t *testing.T) {
	cfg := vmm.Config{Name: "m1", Arch: "amd64", CPUs: 1, MemoryMiB: 1024, RunDir: "/r", MAC: "5a:94:ef:e4:0c:ee"}
	if args := strings.Join((&Backend{}).Args(cfg, "tcg", "/r/net.sock", "/r/qmp.sock", "/d/vm.pid"), " "); strings.Contains(args, "net1") {
		t.Fatalf("a machine on no network group got a second NIC:\n%s", args)
	}
	cfg.Group = &vmm.GroupNIC{MAC: "5a:94:ef:13:64:02"}
	args := strings.Join((&Backend{}).Args(cfg, "tcg", "/r/net.sock", "/r/qmp.sock", "/d/vm.pid"), " ")
	// The group's NIC comes after the main one, so that the guest names it eth1.
	main := strings.Index(args, "netdev=net0,mac=5a:94:ef:e4:0c:ee")
	group := strings.Index(args, "-netdev stream,id=net1,server=off,addr.type=unix,addr.path=/r/group.sock -device virtio-net-pci,netdev=net1,mac=5a:94:ef:13:64:02")
	if main < 0 || group < main {
		t.Fatalf("QEMU arguments lack the group's NIC after the main one:\n%s", args)
	}
	if _, err := (&Backend{VZDevices: true}).openNIC(cfg, "/r/net.sock"); err == nil {
		t.Fatal("vz's datagram NIC took a network group it cannot carry")
	}
}
