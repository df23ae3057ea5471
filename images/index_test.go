package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// releaseFixture lays out a release's images folder: the fixture image under amd64/ and
// an index listing it (and, for the refusal, nothing else). It returns the folder and
// the index's digest.
func releaseFixture(t *testing.T) (root, indexDigest string) {
	t.Helper()
	src, _, _ := fixture(t)
	root = t.TempDir()
	if err := os.Rename(src, filepath.Join(root, "amd64")); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(root, "amd64", "manifest.json"))
	sum := sha256.Sum256(raw)
	x := Index{SchemaVersion: 1, Kind: "index", Images: []IndexEntry{{Arch: "amd64", Manifest: "amd64/manifest.json", Size: int64(len(raw)), SHA256: hex.EncodeToString(sum[:])}}}
	b, _ := json.Marshal(x)
	if err := os.WriteFile(filepath.Join(root, IndexName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	isum := sha256.Sum256(b)
	return root, hex.EncodeToString(isum[:])
}

// countingServer serves root and counts its requests; off makes it answer 503 to all.
func countingServer(t *testing.T, root string) (srv *httptest.Server, hits *int32, off *atomic.Bool) {
	hits, off = new(int32), new(atomic.Bool)
	fs := http.FileServer(http.Dir(root))
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		atomic.AddInt32(hits, 1)
		if off.Load() {
			http.Error(w, "offline", http.StatusServiceUnavailable)
			return
		}
		fs.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, hits, off
}

func TestInstallFromIndexThenOffline(t *testing.T) {
	root, digest := releaseFixture(t)
	srv, _, off := countingServer(t, root)
	cache := t.TempDir()
	ref := srv.URL + "/" + IndexName + "@sha256:" + digest
	inst, err := Install(context.Background(), ref, cache, Options{Arch: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	if inst.Manifest.Arch != "amd64" || inst.Unpinned {
		t.Fatalf("installed %+v", inst)
	}
	// Offline, the pinned index and its manifest come from the cache.
	off.Store(true)
	again, err := Install(context.Background(), ref, cache, Options{Arch: "amd64"})
	if err != nil || !again.CacheHit || again.Dir != inst.Dir {
		t.Fatalf("offline install of a cached release: %+v %v", again, err)
	}
	// A local release folder resolves through its index too.
	local, err := Install(context.Background(), root, t.TempDir(), Options{Arch: "amd64"})
	if err != nil || local.Digest != inst.Digest {
		t.Fatalf("local release folder: %+v %v", local, err)
	}
}

func TestIndexOtherArchRefused(t *testing.T) {
	root, digest := releaseFixture(t)
	cache := t.TempDir()
	_, err := Install(context.Background(), filepath.Join(root, IndexName)+"@sha256:"+digest, cache, Options{Arch: "riscv64"})
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "has images for amd64, none for riscv64") {
		t.Fatalf("want a one-line refusal listing the index's architectures, got %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(cache, "images", "sha256-*")); len(left) != 0 {
		t.Fatalf("a refused install left %v", left)
	}
}

func TestIndexPinsManifest(t *testing.T) {
	root, digest := releaseFixture(t)
	// The manifest changes under the index: the index's pin catches it.
	p := filepath.Join(root, "amd64", "manifest.json")
	raw, _ := os.ReadFile(p)
	os.WriteFile(p, append(raw, ' '), 0o644)
	_, err := Install(context.Background(), filepath.Join(root, IndexName)+"@sha256:"+digest, t.TempDir(), Options{Arch: "amd64"})
	var dm *DigestMismatchError
	if !errors.As(err, &dm) || dm.File != "manifest.json" {
		t.Fatalf("a manifest the index does not pin was used: %v", err)
	}
}

func TestParseIndexRejectsUnsafePaths(t *testing.T) {
	for _, m := range []string{"../x/manifest.json", "/etc/manifest.json", "a/../../b.json", `a\b.json`, ""} {
		b, _ := json.Marshal(Index{SchemaVersion: 1, Kind: "index", Images: []IndexEntry{{Arch: "amd64", Manifest: m, SHA256: strings.Repeat("0", 64)}}})
		if _, err := ParseIndex(b); err == nil {
			t.Errorf("manifest path %q accepted", m)
		}
	}
}

func TestNotFoundSaysWhatToDo(t *testing.T) {
	srv, _, _ := countingServer(t, t.TempDir())
	u := srv.URL + "/gone/index.json"
	_, err := Install(context.Background(), u+"@sha256:"+strings.Repeat("a", 64), t.TempDir(), Options{})
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), u+": 404") || !strings.Contains(err.Error(), "check the image URL") {
		t.Fatalf("want the URL and what to do, got %v", err)
	}
	// A file of the manifest missing from the server says the same.
	src, _, digest := fixture(t)
	os.Remove(filepath.Join(src, "root.squashfs"))
	srv2, _, _ := countingServer(t, src)
	_, err = Install(context.Background(), srv2.URL+"/manifest.json@sha256:"+digest, t.TempDir(), Options{})
	if err == nil || !strings.Contains(err.Error(), srv2.URL+"/root.squashfs: 404") || !strings.Contains(err.Error(), "published whole") {
		t.Fatalf("missing image file: %v", err)
	}
}

// A flat release names the published files apart from what they install as.
func TestInstallPublishedPath(t *testing.T) {
	src, files, _ := fixture(t)
	raw, _ := os.ReadFile(filepath.Join(src, "manifest.json"))
	m, err := ParseManifest(raw)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range m.Files {
		m.Files[i].Path = "skiff-images_amd64_" + f.Name
		os.Rename(filepath.Join(src, f.Name), filepath.Join(src, m.Files[i].Path))
	}
	raw, _ = json.Marshal(m)
	os.WriteFile(filepath.Join(src, "skiff-images_amd64.json"), raw, 0o644)
	sum := sha256.Sum256(raw)
	srv, _, _ := countingServer(t, src)
	inst, err := Install(context.Background(), srv.URL+"/skiff-images_amd64.json@sha256:"+hex.EncodeToString(sum[:]), t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if got, err := os.ReadFile(filepath.Join(inst.Dir, name)); err != nil || string(got) != string(data) {
			t.Fatalf("%s not installed under its own name: %v", name, err)
		}
	}
	m.Files[0].Path = "../x"
	raw, _ = json.Marshal(m)
	if _, err := ParseManifest(raw); err == nil {
		t.Fatal("an unsafe published path was accepted")
	}
}

// A download that keeps failing stops with what it kept and how to go on.
func TestInterruptedDownloadSaysResume(t *testing.T) {
	src, files, digest := fixture(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := filepath.Base(r.URL.Path)
		if name != "root.squashfs" {
			http.ServeFile(w, r, filepath.Join(src, name))
			return
		}
		data := files[name]
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data[:len(data)/2])
		panic(http.ErrAbortHandler) // the connection drops mid-body
	}))
	t.Cleanup(srv.Close)
	_, err := Install(context.Background(), srv.URL+"/manifest.json@sha256:"+digest, t.TempDir(), Options{})
	if err == nil || !strings.Contains(err.Error(), "of root.squashfs are kept: run the command again to resume") {
		t.Fatalf("want what was kept and how to resume, got %v", err)
	}
}
