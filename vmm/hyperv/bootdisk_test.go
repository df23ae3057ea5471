package hyperv

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/vmm"
)

// TestLUNOrderMatchesBootDisk: Hyper-V cannot set disk serials, so the guest finds its
// disks by the LUN the boot disk's command line names for each (skiff.luns, written by
// images/efiboot.sh). That table must be this backend's attach order.
func TestLUNOrderMatchesBootDisk(t *testing.T) {
	recipe, err := os.ReadFile("../../images/efiboot.sh")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^EFI_LUNS=(\S+)$`).FindSubmatch(recipe)
	if m == nil {
		t.Fatal("images/efiboot.sh sets no EFI_LUNS")
	}
	// The host agent's disks, in its order (machine/hostagent vmConfig).
	cfg := vmm.Config{Kernel: "/img/vmlinuz", Disks: []vmm.Disk{
		{Path: "/img/root.squashfs", Serial: "skiff-root"}, {Path: "/m/data.img", Serial: "skiff-data"}, {Path: "/m/seed.img", Serial: "skiff-seed"},
		{Path: "/img/engine-docker.squashfs", Serial: "skiff-engine"}}}
	var serials []string
	for _, d := range (&Backend{}).disks(cfg) {
		serials = append(serials, d.Serial)
	}
	if got, want := strings.Join(serials, ","), string(m[1]); got != want {
		t.Fatalf("the VM's disks at LUN 0, 1, ... are %s; the boot disk's skiff.luns says %s", got, want)
	}
}

// TestCheckImageDir: an image without efi-boot.img fails in one line naming it.
func TestCheckImageDir(t *testing.T) {
	dir := t.TempDir()
	err := (&Backend{}).CheckImageDir(dir)
	if err == nil || !strings.Contains(err.Error(), BootDiskName) || !strings.Contains(err.Error(), "make image") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("an image without the boot disk: %v", err)
	}
	os.WriteFile(filepath.Join(dir, BootDiskName), nil, 0o644)
	if err := (&Backend{}).CheckImageDir(dir); err != nil {
		t.Fatal(err)
	}
}

// TestStartWithoutBootDisk: a machine whose image lost its boot disk fails Start in one
// line naming it, before any Hyper-V cmdlet runs (nothing to undo).
func TestStartWithoutBootDisk(t *testing.T) {
	s := newSim(t)
	cfg := testConfig(t)
	os.Remove(filepath.Join(filepath.Dir(cfg.Kernel), BootDiskName))
	_, err := testBackend(s).Start(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), BootDiskName) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Start without the boot disk: %v", err)
	}
	if len(s.scripts) != 0 {
		t.Fatalf("Start ran %d PowerShell scripts before failing: %q", len(s.scripts), s.scripts)
	}
}
