package images

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestInstallRefusesUnpinnedHTTP(t *testing.T) {
	src, _, _ := fixture(t)
	srv, _ := flakyServer(t, src, false)
	cache := t.TempDir()
	_, err := Install(context.Background(), srv.URL+"/manifest.json", cache, Options{})
	if !errors.Is(err, ErrUnpinnedHTTP) || strings.Contains(err.Error(), "\n") ||
		!strings.Contains(err.Error(), srv.URL+"/manifest.json") || !strings.Contains(err.Error(), "add @sha256:DIGEST or use https") {
		t.Fatalf("want a one-line refusal of plain http naming the URL, got %v", err)
	}
	if ents, _ := os.ReadDir(cache); len(ents) != 0 {
		t.Fatal("a refused install wrote to the cache")
	}
}

func TestInstallHTTPSUnpinnedIsReported(t *testing.T) {
	src, _, digest := fixture(t)
	srv := httptest.NewTLSServer(http.FileServer(http.Dir(src)))
	t.Cleanup(srv.Close)
	inst, err := Install(context.Background(), srv.URL+"/manifest.json", t.TempDir(), Options{Client: srv.Client()})
	if err != nil || !inst.Unpinned || inst.Digest != "sha256:"+digest {
		t.Fatalf("unpinned https install: %+v %v", inst, err)
	}
	inst, err = Install(context.Background(), srv.URL+"/manifest.json@sha256:"+digest, t.TempDir(), Options{Client: srv.Client()})
	if err != nil || inst.Unpinned {
		t.Fatalf("pinned https install: %+v %v", inst, err)
	}
}

func TestInstallUnpinnedRefusesRedirectToHTTP(t *testing.T) {
	src, _, _ := fixture(t)
	plain, _ := flakyServer(t, src, false)
	srv := httptest.NewTLSServer(http.RedirectHandler(plain.URL+"/manifest.json", http.StatusFound))
	t.Cleanup(srv.Close)
	_, err := Install(context.Background(), srv.URL+"/manifest.json", t.TempDir(), Options{Client: srv.Client()})
	if err == nil || !strings.Contains(err.Error(), "refusing redirect to "+plain.URL) {
		t.Fatalf("an unpinned https manifest followed a redirect to http: %v", err)
	}
}

// Two `machine init` at once of one image: both get it, whole, in one folder.
func TestConcurrentInstalls(t *testing.T) {
	src, files, digest := fixture(t)
	srv, _ := flakyServer(t, src, false)
	cache := t.TempDir()
	ref := srv.URL + "/img/manifest.json@sha256:" + digest
	var wg sync.WaitGroup
	insts := make([]*Installed, 2)
	errs := make([]error, 2)
	for i := range insts {
		wg.Go(func() { insts[i], errs[i] = Install(context.Background(), ref, cache, Options{}) })
	}
	wg.Wait()
	for i := range insts {
		if errs[i] != nil {
			t.Fatalf("install %d: %v", i, errs[i])
		}
	}
	if insts[0].Dir != insts[1].Dir || insts[0].CacheHit == insts[1].CacheHit {
		t.Fatalf("want one install and one cache hit of one folder: %+v %+v", insts[0], insts[1])
	}
	for name, data := range files {
		if got, _ := os.ReadFile(filepath.Join(insts[0].Dir, name)); string(got) != string(data) {
			t.Fatalf("%s not installed intact", name)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(cache, "images", ".partial-*")); len(left) != 0 {
		t.Fatalf("partial folders left: %v", left)
	}
	if _, err := Verify(context.Background(), insts[0].Dir, VerifyOptions{Digest: insts[0].Digest}); err != nil {
		t.Fatal(err)
	}
}

// Where no lock kept two installs apart, the one that renames second keeps the first's.
func TestPublishAfterAnotherInstall(t *testing.T) {
	dir := t.TempDir()
	final := filepath.Join(dir, "sha256-x")
	for _, d := range []string{final, filepath.Join(dir, ".partial-x-1")} {
		os.Mkdir(d, 0o755)
		os.WriteFile(filepath.Join(d, "manifest.json"), []byte(d), 0o644)
	}
	if err := publish(filepath.Join(dir, ".partial-x-1"), final); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(final, "manifest.json")); string(got) != final {
		t.Fatal("the image in place was replaced")
	}
	if _, err := os.Stat(filepath.Join(dir, ".partial-x-1")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the losing partial folder was kept: %v", err)
	}
}

// An interrupted install leaves its folder, and the next install resumes from it.
func TestInstallResumesLeftPartial(t *testing.T) {
	src, files, digest := fixture(t)
	cache := t.TempDir()
	left := filepath.Join(cache, "images", ".partial-"+digest+"-1234")
	os.MkdirAll(left, 0o755)
	os.WriteFile(filepath.Join(left, "root.squashfs"), files["root.squashfs"][:1000], 0o644)
	var ranges []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ranges = append(ranges, filepath.Base(r.URL.Path)+" "+r.Header.Get("Range"))
		mu.Unlock()
		http.ServeFile(w, r, filepath.Join(src, filepath.Base(r.URL.Path)))
	}))
	t.Cleanup(srv.Close)
	if _, err := Install(context.Background(), srv.URL+"/manifest.json@sha256:"+digest, cache, Options{}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(strings.Join(ranges, ","), "root.squashfs bytes=1000-") {
		t.Fatalf("the left download was not resumed: %v", ranges)
	}
}

// A cached image that was changed is installed again; the changed copy is kept aside.
func TestInstallReplacesChangedCache(t *testing.T) {
	src, files, digest := fixture(t)
	cache := t.TempDir()
	inst, err := Install(context.Background(), src, cache, Options{})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(inst.Dir, "vmlinuz"), []byte(strings.Repeat("P", 100_000)), 0o644)
	var progress strings.Builder
	again, err := Install(context.Background(), src+"@sha256:"+digest, cache, Options{Progress: &progress})
	if err != nil || again.CacheHit || again.Dir != inst.Dir {
		t.Fatalf("reinstall over a changed cache: %+v %v", again, err)
	}
	if got, _ := os.ReadFile(filepath.Join(inst.Dir, "vmlinuz")); string(got) != string(files["vmlinuz"]) {
		t.Fatal("the changed kernel is still in place")
	}
	aside, _ := filepath.Glob(filepath.Join(cache, "images", ".changed-sha256-"+digest+"-*", "vmlinuz"))
	if len(aside) != 1 || !strings.Contains(progress.String(), "image file vmlinuz in ") {
		t.Fatalf("the changed copy was not kept and named (%v):\n%s", aside, progress.String())
	}
	if _, err := Verify(context.Background(), inst.Dir, VerifyOptions{Digest: again.Digest}); err != nil {
		t.Fatal(err)
	}
}

// An install waits for another of the same image, and gives up with its context.
func TestInstallWaitsForLock(t *testing.T) {
	src, _, digest := fixture(t)
	cache := t.TempDir()
	os.MkdirAll(filepath.Join(cache, "images"), 0o755)
	unlock, locked, err := lockImage(context.Background(), filepath.Join(cache, "images"), digest, nil)
	if err != nil || !locked {
		t.Skipf("no file locks here: %v", err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var progress strings.Builder
	_, err = Install(ctx, src, cache, Options{Progress: &progress})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(progress.String(), "waiting for another install") {
		t.Fatalf("want a wait that ends with the context, got %v (%q)", err, progress.String())
	}
}
