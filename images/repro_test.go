//go:build linux

package images

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"testing"
)

// TestReproducibleImage checks that the image recipe gives the same bytes from the same
// inputs: two runs of build.sh with one agent binary must write identical files (initrd,
// manifest, and the cached root), and the packed root squashfs rebuilt from its own
// unpacked tree must equal the one the build made. The slow rootfs stage is not rerun: it is cached
// by recipe hash, and `make image` has already built it in CI.
//
//	SKIFF_IMAGE_REPRO=1 go test -run TestReproducibleImage ./images/
func TestReproducibleImage(t *testing.T) {
	if os.Getenv("SKIFF_IMAGE_REPRO") != "1" {
		t.Skip("image reproducibility check: set SKIFF_IMAGE_REPRO=1 (runs images/build.sh, needs root and the rootfs stage cached by `make image`)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root: unpacking the root filesystem must keep file owners")
	}
	arch := runtime.GOARCH
	if a := os.Getenv("SKIFF_IMAGE_ARCH"); a != "" {
		arch = a
	}
	dir := t.TempDir()
	agent := filepath.Join(dir, "agent")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=repro", "-o", agent, "../cmd/skiff-agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build agent: %v\n%s", err, out)
	}

	outs := []string{filepath.Join(dir, "a"), filepath.Join(dir, "b")}
	for _, out := range outs {
		cmd := exec.Command("./build.sh", arch, agent, out)
		cmd.Env = recipeEnv()
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build.sh: %v\n%s", err, b)
		}
	}
	a, b := digests(t, outs[0]), digests(t, outs[1])
	if len(a) == 0 {
		t.Fatalf("build.sh wrote nothing into %s", outs[0])
	}
	// The Hyper-V boot disk (images/efiboot.sh) is among what must come out the same.
	if _, ok := a["efi-boot.img.zst"]; arch == "amd64" && !ok {
		t.Errorf("the amd64 build made no efi-boot.img.zst")
	}
	for name, da := range a {
		if db, ok := b[name]; !ok {
			t.Errorf("%s: only in the first build", name)
		} else if da != db {
			t.Errorf("%s differs between two builds from the same inputs: %s vs %s", name, da, db)
		}
	}
	for name := range b {
		if _, ok := a[name]; !ok {
			t.Errorf("%s: only in the second build", name)
		}
	}

	// The root again from its own tree, with the recipe's own squashfs and pack steps.
	tree := filepath.Join(dir, "tree")
	root := filepath.Join(dir, "root.squashfs")
	if out, err := exec.Command("zstd", "-q", "-d", "--long=27", "-o", root, filepath.Join(outs[0], "root.squashfs.zst")).CombinedOutput(); err != nil {
		t.Fatalf("unpack root: %v\n%s", err, out)
	}
	if out, err := exec.Command("unsquashfs", "-quiet", "-no-progress", "-d", tree, root).CombinedOutput(); err != nil {
		t.Fatalf("unsquashfs: %v\n%s", err, out)
	}
	again := filepath.Join(dir, "again.squashfs")
	cmd := exec.Command("bash", "-c", `HERE=. && . ./rootfs.sh && make_squashfs "$0" "$1" && pack "$1"`, tree, again)
	cmd.Env = recipeEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make_squashfs: %v\n%s", err, out)
	}
	if x, y := fileDigest(t, filepath.Join(outs[0], "root.squashfs.zst")), fileDigest(t, again+".zst"); x != y {
		t.Errorf("root.squashfs.zst rebuilt from its own tree differs: %s vs %s", x, y)
	}
}

// recipeEnv leaves SOURCE_DATE_EPOCH to the recipe, whatever the caller's is.
func recipeEnv() []string { return append(os.Environ(), "SOURCE_DATE_EPOCH=") }

// digests maps every regular file in dir to its sha256.
func digests(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() {
			m[e.Name()] = fileDigest(t, filepath.Join(dir, e.Name()))
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	t.Logf("%s: %v", dir, names)
	return m
}

func fileDigest(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
