package qemu

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/vmm"
	"github.com/skiff-dev/skiff/vmm/qemu/internal/wslinit"
	"github.com/skiff-dev/skiff/vmm/wsl2"
)

func wslTestConfig(dir string) vmm.Config {
	return vmm.Config{
		Name: "dev", Dir: dir, RunDir: dir, Arch: "amd64", CPUs: 2, MemoryMiB: 1024,
		Kernel: filepath.Join(dir, "img", "vmlinuz"), Initrd: filepath.Join(dir, "img", "initrd.img"),
		Disks: []vmm.Disk{
			{Path: filepath.Join(dir, "img", "root.squashfs"), Serial: "skiff-root", ReadOnly: true},
			{Path: filepath.Join(dir, "data.img"), Serial: "skiff-data", Discard: true},
			{Path: filepath.Join(dir, "seed.img"), Serial: "skiff-seed", ReadOnly: true},
		},
		SerialLog: filepath.Join(dir, "serial.log"),
	}
}

// The stand-in boots the tar in place of the root disk and runs what wsl.exe would.
func TestWSLStandInConfig(t *testing.T) {
	cfg := wslTestConfig("/m")
	tar := wslRootfs(cfg)
	if tar != "/m/img/wsl-rootfs.tar" {
		t.Errorf("rootfs looked for at %s, want next to the kernel", tar)
	}
	c := standInVMConfig(cfg, "/m/wsl-standin-initrd.img", tar)
	want := []vmm.Disk{{Path: tar, Serial: wslTarSerial, ReadOnly: true}, cfg.Disks[1], cfg.Disks[2]}
	if !slices.Equal(c.Disks, want) || c.Initrd != "/m/wsl-standin-initrd.img" || c.Kernel != cfg.Kernel {
		t.Errorf("stand-in VM config %+v", c)
	}
	if cfg.Disks[0].Serial != "skiff-root" {
		t.Error("standInVMConfig changed the caller's disks")
	}
	sc, err := standInConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sc.Command, wsl2.AgentCommand("/mnt/c/skiff/dev/seed.img", wsl2.NetworkWSL)) || sc.SeedPath != "/mnt/c/skiff/dev/seed.img" {
		t.Errorf("stand-in config %+v", sc)
	}
}

// The stand-in's initrd is the image's, then an archive whose /init and config the
// kernel unpacks over it; cpio reads it the same way.
func TestWSLStandInInitrd(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("cpio not installed")
	}
	dir := t.TempDir()
	image, init, out := filepath.Join(dir, "image.img"), filepath.Join(dir, "init"), filepath.Join(dir, "out.img")
	// An image initrd as build.sh makes it: /init and /modules, in 512-byte blocks.
	src := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "modules"), 0o755)
	os.WriteFile(filepath.Join(src, "init"), []byte("the agent"), 0o755)
	os.WriteFile(filepath.Join(src, "modules", "load.list"), []byte("virtio_blk.ko\n"), 0o644)
	mk := exec.Command("sh", "-c", "find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 > "+image)
	mk.Dir = src
	if b, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("cpio: %v %s", err, b)
	}
	os.WriteFile(init, []byte("the stand-in, odd length"), 0o755)
	sc := wslinit.Config{Command: []string{"/usr/sbin/skiff-agent", "boot-wsl"}, DistroSerial: "skiff-data"}
	if err := writeStandInInitrd(out, image, init, sc); err != nil {
		t.Fatal(err)
	}
	// GNU cpio reads concatenated archives one at a time, as the kernel does in one pass.
	x := filepath.Join(dir, "x")
	os.Mkdir(x, 0o755)
	ext := exec.Command("sh", "-c", "cpio --quiet -idu < "+out+" && dd if="+out+" bs=512 skip=$(( $(stat -c %s "+image+") / 512 )) 2>/dev/null | cpio --quiet -idu")
	ext.Dir = x
	if b, err := ext.CombinedOutput(); err != nil {
		t.Fatalf("unpack: %v %s", err, b)
	}
	if b, _ := os.ReadFile(filepath.Join(x, "init")); string(b) != "the stand-in, odd length" {
		t.Errorf("/init is %q, want the stand-in", b)
	}
	if fi, err := os.Stat(filepath.Join(x, "init")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("/init: %v %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(x, "modules", "load.list")); err != nil {
		t.Errorf("the image's modules are gone: %v", err)
	}
	var got wslinit.Config
	b, _ := os.ReadFile(filepath.Join(x, strings.TrimPrefix(wslinit.ConfigPath, "/")))
	if err := json.Unmarshal(b, &got); err != nil || !slices.Equal(got.Command, sc.Command) {
		t.Errorf("config %s: %v", b, err)
	}
}

// An image without the tar fails at once with one line that names it, and makes nothing.
func TestWSLStandInImageWithoutRootfs(t *testing.T) {
	dir := t.TempDir()
	cfg := wslTestConfig(dir)
	os.MkdirAll(filepath.Dir(cfg.Kernel), 0o755)
	for _, f := range []string{cfg.Kernel, cfg.Initrd} {
		os.WriteFile(f, []byte("x"), 0o644)
	}
	before, _ := os.ReadDir(dir)
	_, err := (&WSLStandIn{Init: "/nonexistent"}).Start(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), wsl2.RootfsName) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Start = %v; want one line naming %s", err, wsl2.RootfsName)
	}
	if after, _ := os.ReadDir(dir); len(after) != len(before) {
		t.Errorf("the failed start left files: %v", after)
	}
}

// Prepare formats the distro's disk once; a second Prepare keeps what the first made.
func TestWSLStandInPrepare(t *testing.T) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 not installed")
	}
	dir := t.TempDir()
	cfg := wslTestConfig(dir)
	f, _ := os.Create(cfg.Disks[1].Path)
	f.Truncate(64 << 20)
	f.Close()
	superblock := func() []byte {
		b, _ := os.ReadFile(cfg.Disks[1].Path)
		return b[1024:2048]
	}
	b := &WSLStandIn{}
	if err := b.Prepare(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	first := superblock()
	if first[56] != 0x53 || first[57] != 0xEF {
		t.Fatal("the distro's disk has no ext4 superblock after Prepare")
	}
	if err := b.Prepare(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(first, superblock()) {
		t.Error("a second Prepare formatted the distro's disk again")
	}
}
