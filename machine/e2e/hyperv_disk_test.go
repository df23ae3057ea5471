//go:build linux

package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/images"
	"github.com/skiff-dev/skiff/machine/machinetest"
	"github.com/skiff-dev/skiff/vmm"
)

// TestHyperVBootDisk runs a whole machine on what Hyper-V boots (backend qemu-hyperv): the
// image's efi-boot.img under OVMF, every disk a SCSI LUN in vmm/hyperv's order with no
// serial, so the guest can only have found its root, data and seed disks by LUN.
func TestHyperVBootDisk(t *testing.T) {
	e := machinetest.New(t)
	e.Must("machine", "init", "hv", "--backend", "qemu-hyperv", "--cpus", "2", "--memory", "2G", "--disk-size", "8G", "--no-home-share")
	e.Must("machine", "start", "hv")
	if s := state(e, "hv"); s != "running" {
		t.Fatalf("after start the machine reads %q", s)
	}
	e.LoadBusybox("hv")
	if out := e.MustDocker("hv", "run", "--rm", machinetest.TestImage, "echo", "hello from the Hyper-V boot disk"); strings.TrimSpace(out) != "hello from the Hyper-V boot disk" {
		t.Fatalf("docker run printed %q", out)
	}

	// The guest booted the UKI's command line: the manifest's, plus the LUN table.
	b, err := os.ReadFile(filepath.Join(e.Image, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := images.ParseManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	want := m.BootCmdline() + " skiff.luns=skiff-boot,skiff-root,skiff-data,skiff-seed,skiff-engine"
	if got := strings.TrimSpace(e.Must("machine", "ssh", "hv", "--", "cat /proc/cmdline")); got != want {
		t.Errorf("the guest's command line is\n%s\nwant the boot disk's\n%s", got, want)
	}
	// Root, data, seed and the engine layer are SCSI disks at LUNs 1-4 of the virtio-scsi host, and no
	// virtio-blk disk exists: the mounts came from the LUN mapping.
	out := e.Must("machine", "ssh", "hv", "--", `ls /sys/block; for d in /sys/block/sd*; do echo "$d $(ls $d/device/scsi_device)"; done; grep -E ' /run/skiff/(lower|engine) | /var/lib/skiff ' /proc/mounts`)
	t.Logf("guest disks:\n%s", out)
	for _, re := range []string{
		`(?m)^/sys/block/(sd[a-z]+) \d+:0:0:1$`, // root
		`(?m)^/sys/block/(sd[a-z]+) \d+:0:0:2$`, // data
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("no SCSI disk matching %s:\n%s", re, out)
		}
	}
	lunDev := func(lun string) string {
		m := regexp.MustCompile(`(?m)^/sys/block/(sd[a-z]+) \d+:0:0:` + lun + `$`).FindStringSubmatch(out)
		if m == nil {
			return "(none)"
		}
		return "/dev/" + m[1]
	}
	if !strings.Contains(out, lunDev("1")+" /run/skiff/lower squashfs") {
		t.Errorf("the root squashfs is not mounted from LUN 1's %s:\n%s", lunDev("1"), out)
	}
	if !strings.Contains(out, lunDev("2")+" /var/lib/skiff ext4") {
		t.Errorf("the data disk is not mounted from LUN 2's %s:\n%s", lunDev("2"), out)
	}
	if !strings.Contains(out, lunDev("4")+" /run/skiff/engine squashfs") {
		t.Errorf("the engine layer is not mounted from LUN 4's %s:\n%s", lunDev("4"), out)
	}
	if strings.Contains(out, "vd") {
		t.Errorf("a virtio-blk disk is attached:\n%s", out)
	}

	// A second boot keeps the VM's UEFI variable store (the firmware's boot entries).
	vars := filepath.Join(e.Home, "machines", "hv", "uefi-vars.fd")
	if _, err := os.Stat(vars); err != nil {
		t.Fatalf("no per-machine UEFI variable store: %v", err)
	}
	e.Must("machine", "stop", "hv")
	e.Must("machine", "start", "hv")
	if out := e.MustDocker("hv", "run", "--rm", machinetest.TestImage, "echo", "again"); strings.TrimSpace(out) != "again" {
		t.Fatalf("docker run after a restart printed %q", out)
	}
	e.Must("machine", "rm", "-f", "hv")
	if _, err := os.Stat(filepath.Dir(vars)); !os.IsNotExist(err) {
		t.Fatalf("rm -f left the machine directory: %v", err)
	}
}

// TestHyperVBootDiskMissing: an image without efi-boot.img (one built before it existed)
// serves the direct boot, and fails `init --backend qemu-hyperv` in one line naming the
// file and how to get it, with no machine left behind.
func TestHyperVBootDiskMissing(t *testing.T) {
	e := machinetest.New(t)
	old := imageWithout(t, e.Image, "efi-boot")
	// Installed first, so that the failing init prints no install progress.
	e.Must("machine", "init", "direct", "--image", old, "--no-home-share")
	out, err := e.Run("machine", "init", "hv", "--backend", "qemu-hyperv", "--image", old, "--no-home-share")
	out = strings.TrimSpace(out)
	if err == nil {
		t.Fatalf("init of a qemu-hyperv machine from an image without the boot disk succeeded:\n%s", out)
	}
	if strings.Count(out, "\n") != 0 || !strings.Contains(out, vmm.EFIBootDisk) || !strings.Contains(out, "make image") {
		t.Errorf("want one line naming %s and how to get it, got:\n%s", vmm.EFIBootDisk, out)
	}
	if ls := e.Must("machine", "list", "--format", "{{.Name}}"); strings.TrimSpace(ls) != "direct" {
		t.Errorf("machines after the failed init: %q, want only direct", ls)
	}
	if _, err := os.Stat(filepath.Join(e.Home, "machines", "hv")); !os.IsNotExist(err) {
		t.Errorf("the failed init made the machine directory: %v", err)
	}
}
