package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// fixture writes a small image (three files and a manifest) into a directory.
func fixture(t *testing.T) (dir string, files map[string][]byte, digest string) {
	t.Helper()
	dir = t.TempDir()
	files = map[string][]byte{
		"vmlinuz":       []byte(strings.Repeat("K", 100_000)),
		"initrd.img":    []byte(strings.Repeat("I", 50_000)),
		"root.squashfs": []byte(strings.Repeat("R", 400_000)),
	}
	m := Manifest{SchemaVersion: 1, Name: "skiff-guest", Version: "test", Arch: "amd64"}
	for name, role := range map[string]string{"vmlinuz": "kernel", "initrd.img": "initrd", "root.squashfs": "root"} {
		sum := sha256.Sum256(files[name])
		m.Files = append(m.Files, File{Role: role, Name: name, Size: int64(len(files[name])), SHA256: hex.EncodeToString(sum[:])})
		os.WriteFile(filepath.Join(dir, name), files[name], 0o644)
	}
	raw, _ := json.Marshal(m)
	os.WriteFile(filepath.Join(dir, "manifest.json"), raw, 0o644)
	sum := sha256.Sum256(raw)
	return dir, files, hex.EncodeToString(sum[:])
}

func TestInstallLocalAndCacheHit(t *testing.T) {
	src, files, digest := fixture(t)
	cache := t.TempDir()
	inst, err := Install(context.Background(), src, cache, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if inst.CacheHit || inst.Digest != "sha256:"+digest {
		t.Fatalf("first install: hit=%v digest=%s", inst.CacheHit, inst.Digest)
	}
	for name, data := range files {
		got, err := os.ReadFile(filepath.Join(inst.Dir, name))
		if err != nil || string(got) != string(data) {
			t.Fatalf("%s not installed intact: %v", name, err)
		}
	}
	again, err := Install(context.Background(), src+"@sha256:"+digest, cache, Options{})
	if err != nil || !again.CacheHit || again.Dir != inst.Dir {
		t.Fatalf("second install was not a cache hit: %+v %v", again, err)
	}
}

func TestInstallCorruptLocalFile(t *testing.T) {
	src, _, _ := fixture(t)
	os.WriteFile(filepath.Join(src, "root.squashfs"), []byte(strings.Repeat("X", 400_000)), 0o644)
	cache := t.TempDir()
	_, err := Install(context.Background(), src, cache, Options{})
	var dm *DigestMismatchError
	if !errors.As(err, &dm) || dm.File != "root.squashfs" || dm.Expected == "" || dm.Actual == "" {
		t.Fatalf("want a digest mismatch naming root.squashfs with both digests, got %v", err)
	}
	if !strings.Contains(err.Error(), dm.Expected) || !strings.Contains(err.Error(), dm.Actual) {
		t.Fatalf("error does not show both digests: %v", err)
	}
	ents, _ := filepath.Glob(filepath.Join(cache, "images", "sha256-*"))
	if len(ents) != 0 {
		t.Fatalf("a corrupt image was installed: %v", ents)
	}
}

func TestInstallTruncatedFile(t *testing.T) {
	src, files, _ := fixture(t)
	os.WriteFile(filepath.Join(src, "vmlinuz"), files["vmlinuz"][:1000], 0o644)
	_, err := Install(context.Background(), src, t.TempDir(), Options{})
	if err == nil || !strings.Contains(err.Error(), "vmlinuz") || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("want a truncation error naming vmlinuz, got %v", err)
	}
}

func TestInstallWrongPinnedDigest(t *testing.T) {
	src, _, digest := fixture(t)
	wrong := strings.Repeat("0", 64)
	_, err := Install(context.Background(), src+"@sha256:"+wrong, t.TempDir(), Options{})
	var dm *DigestMismatchError
	if !errors.As(err, &dm) || dm.File != "manifest.json" || dm.Actual != digest {
		t.Fatalf("want a manifest digest mismatch, got %v", err)
	}
}

// flakyServer serves the fixture over HTTP with Range support, and cuts the first
// response of every large file halfway by closing the connection.
func flakyServer(t *testing.T, dir string, cut bool) (*httptest.Server, *int32) {
	var ranges int32
	cutDone := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := filepath.Base(r.URL.Path)
		if r.Header.Get("Range") != "" {
			atomic.AddInt32(&ranges, 1)
		}
		if cut && !cutDone[name] && strings.HasPrefix(name, "root.") {
			cutDone[name] = true
			data, _ := os.ReadFile(filepath.Join(dir, name))
			hj := w.(http.Hijacker)
			conn, buf, _ := hj.Hijack()
			fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(data))
			buf.Write(data[:len(data)/2])
			buf.Flush()
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
			return
		}
		http.ServeFile(w, r, filepath.Join(dir, name))
	}))
	t.Cleanup(srv.Close)
	return srv, &ranges
}

func TestDownloadResumesAfterDrop(t *testing.T) {
	src, files, digest := fixture(t)
	srv, ranges := flakyServer(t, src, true)
	cache := t.TempDir()
	var progress strings.Builder
	inst, err := Install(context.Background(), srv.URL+"/img/manifest.json@sha256:"+digest, cache, Options{Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if atomic.LoadInt32(ranges) == 0 {
		t.Fatal("the dropped download was restarted from zero, not resumed with a Range request")
	}
	got, _ := os.ReadFile(filepath.Join(inst.Dir, "root.squashfs"))
	if string(got) != string(files["root.squashfs"]) {
		t.Fatal("the resumed file differs from the original")
	}
	if !strings.Contains(progress.String(), "100.0%") {
		t.Fatalf("no progress bar reached 100%%:\n%s", progress.String())
	}
}

func TestDownloadCorruptFile(t *testing.T) {
	src, _, digest := fixture(t)
	// Serve a manifest whose root digest no longer matches the served file.
	os.WriteFile(filepath.Join(src, "root.squashfs"), []byte(strings.Repeat("Z", 400_000)), 0o644)
	srv, _ := flakyServer(t, src, false)
	cache := t.TempDir()
	_, err := Install(context.Background(), srv.URL+"/manifest.json@sha256:"+digest, cache, Options{})
	var dm *DigestMismatchError
	if !errors.As(err, &dm) || dm.File != "root.squashfs" {
		t.Fatalf("want a digest mismatch for root.squashfs, got %v", err)
	}
	// The corrupt file is not kept to be resumed from.
	nothingInstalled(t, cache, "root.squashfs")
}

// nothingInstalled fails when a failed install left an image in the cache, or partial
// files matching leftover to be resumed from.
func nothingInstalled(t *testing.T, cache, leftover string) {
	t.Helper()
	if ents, _ := filepath.Glob(filepath.Join(cache, "images", "sha256-*")); len(ents) != 0 {
		t.Fatalf("half-installed image left in the cache: %v", ents)
	}
	if ents, _ := filepath.Glob(filepath.Join(cache, "images", ".partial-*", leftover)); len(ents) != 0 {
		t.Fatalf("files of the failed install kept: %v", ents)
	}
}

func TestParseManifestRejectsUnsafeNames(t *testing.T) {
	for _, name := range []string{"../etc/passwd", "a/b", `..\x`, ".."} {
		raw := fmt.Sprintf(`{"schemaVersion":1,"files":[{"role":"kernel","name":%q,"size":1,"sha256":"%s"}]}`, name, strings.Repeat("a", 64))
		if _, err := ParseManifest([]byte(raw)); err == nil {
			t.Errorf("manifest with file name %q accepted", name)
		}
	}
}

// packRoot turns the fixture's root into a zstd download that unpacks to root.squashfs,
// as build.sh ships it. unpacked overrides the digest the manifest gives the result.
func packRoot(t *testing.T, dir string, files map[string][]byte, unpacked string) (digest string) {
	t.Helper()
	enc, _ := zstd.NewWriter(nil)
	packed := enc.EncodeAll(files["root.squashfs"], nil)
	os.WriteFile(filepath.Join(dir, "root.squashfs.zst"), packed, 0o644)
	os.Remove(filepath.Join(dir, "root.squashfs"))
	raw, _ := os.ReadFile(filepath.Join(dir, "manifest.json"))
	var m Manifest
	json.Unmarshal(raw, &m)
	for i, f := range m.Files {
		if f.Role == "root" {
			if unpacked == "" {
				sum := sha256.Sum256(files["root.squashfs"])
				unpacked = hex.EncodeToString(sum[:])
			}
			sum := sha256.Sum256(packed)
			m.Files[i] = File{Role: "root", Name: "root.squashfs.zst", Size: int64(len(packed)), SHA256: hex.EncodeToString(sum[:]),
				Unpack: &Unpacked{Format: "zstd", Name: f.Name, Size: int64(len(files["root.squashfs"])), SHA256: unpacked}}
		}
	}
	raw, _ = json.Marshal(m)
	os.WriteFile(filepath.Join(dir, "manifest.json"), raw, 0o644)
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

func TestInstallUnpacksPackedFile(t *testing.T) {
	src, files, _ := fixture(t)
	files["root.squashfs"] = []byte(strings.Repeat("squash", 200_000)) // compresses well: a short download
	digest := packRoot(t, src, files, "")
	srv, ranges := flakyServer(t, src, true)
	cache := t.TempDir()
	inst, err := Install(context.Background(), srv.URL+"/manifest.json@sha256:"+digest, cache, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if atomic.LoadInt32(ranges) == 0 {
		t.Fatal("the dropped download of the packed root was not resumed")
	}
	if got, _ := os.ReadFile(inst.Manifest.RolePaths(inst.Dir)["root"]); string(got) != string(files["root.squashfs"]) {
		t.Fatal("the root's installed path does not hold the unpacked root")
	}
	if _, err := os.Stat(filepath.Join(inst.Dir, "root.squashfs.zst")); !os.IsNotExist(err) {
		t.Fatalf("the packed download was kept next to what it unpacked to: %v", err)
	}
	again, err := Install(context.Background(), src, cache, Options{})
	if err != nil || !again.CacheHit {
		t.Fatalf("a second install was not a cache hit: %v", err)
	}
}

func TestInstallPackedFileUnpacksWrong(t *testing.T) {
	src, files, _ := fixture(t)
	packRoot(t, src, files, strings.Repeat("0", 64))
	cache := t.TempDir()
	_, err := Install(context.Background(), src, cache, Options{})
	var dm *DigestMismatchError
	if !errors.As(err, &dm) || dm.File != "root.squashfs" || dm.Expected != strings.Repeat("0", 64) {
		t.Fatalf("want a digest mismatch naming the unpacked root.squashfs, got %v", err)
	}
	nothingInstalled(t, cache, "*root*")
}

func TestParseManifestRejectsUnknownPacking(t *testing.T) {
	sum := strings.Repeat("a", 64)
	for _, tc := range []struct{ format, name string }{{"xz", "root.squashfs"}, {"zstd", "../root"}, {"zstd", "root.zst"}, {"zstd", "manifest.json"}, {"zstd", "k"}} {
		raw := fmt.Sprintf(`{"schemaVersion":1,"files":[{"role":"kernel","name":"k","size":1,"sha256":"%s"},{"role":"initrd","name":"i","size":1,"sha256":"%s"},`+
			`{"role":"root","name":"root.zst","size":1,"sha256":"%s","unpack":{"format":%q,"name":%q,"size":2,"sha256":"%s"}}]}`, sum, sum, sum, tc.format, tc.name, sum)
		if _, err := ParseManifest([]byte(raw)); err == nil {
			t.Errorf("manifest packing root as %s onto %q accepted", tc.format, tc.name)
		}
	}
}

func TestBootCmdline(t *testing.T) {
	for _, c := range []struct {
		m    Manifest
		want string
	}{
		{Manifest{Arch: "amd64", KernelCmdline: "console=ttyS0 quiet lsm=bpf"}, "console=ttyS0 quiet lsm=bpf panic=-1 rootwait"},
		{Manifest{Arch: "arm64", KernelCmdline: "console=ttyAMA0 quiet"}, "console=ttyAMA0 quiet panic=-1"},
		{Manifest{Arch: "amd64"}, "console=ttyS0 quiet panic=-1 rootwait"},
		{Manifest{Arch: "arm64"}, "console=ttyAMA0 quiet panic=-1"},
	} {
		if got := c.m.BootCmdline(); got != c.want {
			t.Errorf("%s %q: BootCmdline() = %q, want %q", c.m.Arch, c.m.KernelCmdline, got, c.want)
		}
	}
}

// An image's optional files (a backend's boot disk, WSL's root) are installed only for a
// backend that asks for them, and installing the image again for one adds them.
func TestInstallOptionalRoles(t *testing.T) {
	src, _, _ := fixture(t)
	efi := []byte(strings.Repeat("E", 30_000))
	raw, _ := os.ReadFile(filepath.Join(src, "manifest.json"))
	var m Manifest
	json.Unmarshal(raw, &m)
	sum := sha256.Sum256(efi)
	m.Files = append(m.Files, File{Role: RoleEFIBoot, Name: "efi-boot.img", Size: int64(len(efi)), SHA256: hex.EncodeToString(sum[:])})
	raw, _ = json.Marshal(m)
	os.WriteFile(filepath.Join(src, "manifest.json"), raw, 0o644)
	os.WriteFile(filepath.Join(src, "efi-boot.img"), efi, 0o644)
	cache := t.TempDir()

	inst, err := Install(context.Background(), src, cache, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(inst.Dir, "efi-boot.img")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an install that did not ask for the boot disk has it: %v", err)
	}
	if _, err := os.Stat(filepath.Join(inst.Dir, "root.squashfs")); err != nil {
		t.Fatalf("the root is always installed: %v", err)
	}
	// The optional file is verified when it is added to the installed image.
	os.WriteFile(filepath.Join(src, "efi-boot.img"), []byte(strings.Repeat("X", 30_000)), 0o644)
	var dm *DigestMismatchError
	if _, err := Install(context.Background(), src, cache, Options{Roles: []string{RoleEFIBoot}}); !errors.As(err, &dm) || dm.File != "efi-boot.img" {
		t.Fatalf("a corrupt boot disk added to an installed image: %v", err)
	}
	os.WriteFile(filepath.Join(src, "efi-boot.img"), efi, 0o644)
	again, err := Install(context.Background(), src, cache, Options{Roles: []string{RoleEFIBoot}})
	if err != nil || !again.CacheHit {
		t.Fatalf("install for a backend that needs the boot disk: hit=%v err=%v", again != nil && again.CacheHit, err)
	}
	if got, err := os.ReadFile(filepath.Join(again.Dir, "efi-boot.img")); err != nil || string(got) != string(efi) {
		t.Fatalf("the boot disk was not added intact: %v", err)
	}
}

// TestEngineLayers: an image whose manifest lists an engine's layer leaves the engines to
// layers; one from before the split has none.
func TestEngineLayers(t *testing.T) {
	m := &Manifest{Files: []File{{Role: RoleKernel}, {Role: RoleRoot}, {Role: RoleKube}}}
	if m.EngineLayers() {
		t.Error("an image without engine layers says it has them")
	}
	m.Files = append(m.Files, File{Role: EngineRole("podman")})
	if !m.EngineLayers() || EngineRole("podman") != "engine-podman" {
		t.Errorf("an image with %s: EngineLayers %v", EngineRole("podman"), m.EngineLayers())
	}
}
