package release

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/images"
	"github.com/skiff-dev/skiff/installer"
)

// builtImage writes what images/build.sh leaves in built/arch: three files, a note and
// the manifest.
func builtImage(t *testing.T, built, arch string) {
	t.Helper()
	dir := filepath.Join(built, arch)
	os.MkdirAll(dir, 0o755)
	m := images.Manifest{SchemaVersion: 1, Name: "skiff-guest", Version: "t", Arch: arch}
	for role, name := range map[string]string{"kernel": "vmlinuz", "initrd": "initrd.img", "root": "root.squashfs"} {
		data := []byte(strings.Repeat(arch+name, 1000))
		sum := sha256.Sum256(data)
		m.Files = append(m.Files, images.File{Role: role, Name: name, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])})
		os.WriteFile(filepath.Join(dir, name), data, 0o644)
	}
	os.WriteFile(filepath.Join(dir, "packages.lock"), []byte("docker.io 1\n"), 0o644)
	raw, _ := json.Marshal(m)
	os.WriteFile(filepath.Join(dir, "manifest.json"), raw, 0o644)
}

func TestWriteIndexFlatRelease(t *testing.T) {
	built, dist := t.TempDir(), t.TempDir()
	builtImage(t, built, "amd64")
	builtImage(t, built, "arm64")
	digest, err := WriteIndex(dist, built)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"skiff-images.json", "skiff-images_amd64.json", "skiff-images_arm64_root.squashfs", "skiff-images_arm64_packages.lock"} {
		if _, err := os.Stat(filepath.Join(dist, name)); err != nil {
			t.Errorf("the flat release lacks %s", name)
		}
	}
	if ents, _ := os.ReadDir(dist); len(ents) != 2*5+1 {
		t.Errorf("the release holds %d files, want 11 (and no folders)", len(ents))
	}
	// What a user's skiff does with it: resolve the index, install the host's image.
	for _, arch := range []string{"amd64", "arm64"} {
		inst, err := images.Install(context.Background(), filepath.Join(dist, images.IndexName)+"@sha256:"+digest, t.TempDir(), images.Options{Arch: arch})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(filepath.Join(inst.Dir, "vmlinuz"))
		if inst.Manifest.Arch != arch || string(got) != strings.Repeat(arch+"vmlinuz", 1000) {
			t.Fatalf("%s: installed %s's image", arch, inst.Manifest.Arch)
		}
	}
	// An image in the wrong architecture's folder is refused.
	built2 := t.TempDir()
	builtImage(t, built2, "amd64")
	os.Rename(filepath.Join(built2, "amd64"), filepath.Join(built2, "arm64"))
	if _, err := WriteIndex(t.TempDir(), built2); err == nil || !strings.Contains(err.Error(), "in the folder for arm64") {
		t.Fatalf("misplaced image: %v", err)
	}
}

func TestArchivesAreStable(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "skiff")
	os.WriteFile(bin, []byte("#!/bin/sh\necho skiff\n"), 0o700)
	const epoch = 1700000000
	for _, ext := range []string{".tar.gz", ".zip"} {
		a, b := filepath.Join(dir, "a"+ext), filepath.Join(dir, "b"+ext)
		if err := WriteArchive(a, bin, epoch); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(bin, time.Now(), time.Now()) // the binary's own time must not matter
		if err := WriteArchive(b, bin, epoch); err != nil {
			t.Fatal(err)
		}
		ab, _ := os.ReadFile(a)
		bb, _ := os.ReadFile(b)
		if !bytes.Equal(ab, bb) {
			t.Errorf("%s: two archives of one binary differ", ext)
		}
		name, mode, mtime, data := readArchive(t, a)
		if name != "skiff" || mode != 0o755 || mtime.Unix() != epoch || string(data) != "#!/bin/sh\necho skiff\n" {
			t.Errorf("%s holds %s %o %v %q", ext, name, mode, mtime, data)
		}
	}
	if err := WriteArchive(filepath.Join(dir, "x.rar"), bin, 0); err == nil {
		t.Error("an unknown archive type was written")
	}
}

func readArchive(t *testing.T, p string) (string, os.FileMode, time.Time, []byte) {
	t.Helper()
	if strings.HasSuffix(p, ".zip") {
		zr, err := zip.OpenReader(p)
		if err != nil || len(zr.File) != 1 {
			t.Fatalf("zip: %v", err)
		}
		defer zr.Close()
		f := zr.File[0]
		rc, _ := f.Open()
		data, _ := io.ReadAll(rc)
		return f.Name, f.Mode().Perm(), f.Modified, data
	}
	fh, _ := os.Open(p)
	defer fh.Close()
	gz, err := gzip.NewReader(fh)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	h, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(tr)
	if _, err := tr.Next(); err != io.EOF {
		t.Fatal("more than one file in the archive")
	}
	return h.Name, os.FileMode(h.Mode).Perm(), h.ModTime, data
}

func TestManifestAndSums(t *testing.T) {
	dist := t.TempDir()
	os.WriteFile(filepath.Join(dist, "b.deb"), []byte("deb"), 0o644)
	os.WriteFile(filepath.Join(dist, "a.tar.gz"), []byte("tgz"), 0o644)
	os.WriteFile(filepath.Join(dist, SumsName), []byte("stale"), 0o644)
	if err := WriteManifest(dist, "http://x/skiff-images.json@sha256:"+strings.Repeat("0", 64)); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dist, ManifestName))
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if m.Version != installer.Version || len(m.Files) != 2 || m.Files[0].Name != "a.tar.gz" || m.Files[0].Size != 3 {
		t.Fatalf("release.json = %+v", m)
	}
	sums, _ := os.ReadFile(filepath.Join(dist, SumsName))
	if strings.Count(string(sums), "\n") != 3 || !strings.Contains(string(sums), "  "+ManifestName+"\n") {
		t.Fatalf("SHA256SUMS:\n%s", sums)
	}
	if _, err := exec.LookPath("sha256sum"); err == nil {
		cmd := exec.Command("sha256sum", "--strict", "-c", SumsName)
		cmd.Dir = dist
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("sha256sum -c: %v\n%s", err, out)
		}
		os.WriteFile(filepath.Join(dist, "a.tar.gz"), []byte("tgZ"), 0o644)
		if err := cmd.Run(); err == nil {
			t.Fatal("sha256sum -c passed a changed file")
		}
	}
	os.Symlink("b.deb", filepath.Join(dist, "link"))
	if err := WriteManifest(dist, ""); err == nil {
		t.Fatal("a symlink, which a static server may not serve, was listed")
	}
}

func TestFormulaMatchesRelease(t *testing.T) {
	dist, msi := t.TempDir(), t.TempDir()
	for _, plat := range Platforms {
		goos, goarch, _ := strings.Cut(plat, "/")
		os.WriteFile(filepath.Join(dist, ArchiveName(installer.Version, goos, goarch)), []byte(plat), 0o644)
	}
	const base = "http://127.0.0.1:1/rel"
	if err := WritePackaging(dist, base, msi); err != nil {
		t.Fatal(err)
	}
	if n, err := CheckFormula(dist, base); err != nil || n != 4 {
		t.Fatalf("CheckFormula: %d archives, %v", n, err)
	}
	if _, err := CheckFormula(dist, "http://elsewhere"); err == nil {
		t.Fatal("URLs of another base passed")
	}
	os.WriteFile(filepath.Join(dist, ArchiveName(installer.Version, "darwin", "arm64")), []byte("changed"), 0o644)
	if _, err := CheckFormula(dist, base); err == nil || !strings.Contains(err.Error(), "darwin_arm64") {
		t.Fatalf("a changed archive passed: %v", err)
	}
	wxs, _ := os.ReadFile(filepath.Join(msi, "skiff.wxs"))
	if !strings.Contains(string(wxs), installer.ReleaseProductCode()) || strings.Contains(string(wxs), "<Environment") {
		t.Fatalf("the MSI source is not the wixl one with the release's product code:\n%s", wxs)
	}
	if _, err := os.Stat(filepath.Join(msi, "Environment.idt")); err != nil {
		t.Fatal(err)
	}
}
