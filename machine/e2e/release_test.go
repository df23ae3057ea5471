//go:build linux

package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/images"
	"github.com/skiff-dev/skiff/installer/release"
	"github.com/skiff-dev/skiff/machine/machinetest"
)

// TestReleaseInstall is a user's first day with a release: dist/ served from 127.0.0.1,
// the .deb installed (into a clean root), a fresh HOME, `skiff machine init` with the
// image the binary pins, the server killed halfway through the root's download and
// started again (the next init resumes), a served file with one byte flipped (refused),
// then `machine start` and `docker run` with the server gone, and an init offline.
// The release must be built for the address it is served from:
//
//	installer/release/build.sh 0.0.0-e2e http://127.0.0.1:PORT DIR
//	SKIFF_E2E=1 SKIFF_RELEASE_DIST=DIR go test -run TestReleaseInstall ./machine/e2e/
func TestReleaseInstall(t *testing.T) {
	machinetest.Enabled(t)
	dist := os.Getenv("SKIFF_RELEASE_DIST")
	if dist == "" {
		t.Skip("needs a release built for 127.0.0.1: SKIFF_RELEASE_DIST=DIR after installer/release/build.sh 0.0.0-e2e http://127.0.0.1:PORT DIR")
	}
	man := checkRelease(t, dist)
	loc, _, _ := strings.Cut(man.Image, "@sha256:")
	base := strings.TrimSuffix(loc, "/"+images.IndexName)
	u, err := url.Parse(base)
	if err != nil || u.Hostname() != "127.0.0.1" {
		t.Fatalf("the release pins %s: build it for http://127.0.0.1:PORT to test it here", man.Image)
	}

	t.Run("formula and MSI", func(t *testing.T) {
		if n, err := release.CheckFormula(dist, base); err != nil || n != 4 {
			t.Fatalf("formula: %d archives checked, %v", n, err)
		}
		mustRun(t, "ruby", "-c", filepath.Join(dist, "skiff.rb"))
		msi := filepath.Join(dist, fmt.Sprintf("skiff_%s_windows_amd64.msi", man.Version))
		if out := mustRun(t, "msiinfo", "export", msi, "File"); !strings.Contains(out, "skiff.exe") {
			t.Errorf("the MSI's File table has no skiff.exe:\n%s", out)
		}
		if out := mustRun(t, "msiinfo", "export", msi, "Environment"); !strings.Contains(out, "[~];[INSTALLDIR]") {
			t.Errorf("the MSI does not add its folder to PATH:\n%s", out)
		}
	})

	srv := &releaseServer{dist: dist, addr: u.Host}
	srv.start(t)
	t.Cleanup(srv.stop)
	skiff := installDeb(t, dist, man.Version)
	if out := mustRun(t, skiff, "version"); !strings.Contains(out, "image "+man.Image) {
		t.Fatalf("skiff version does not show the pinned image %s:\n%s", man.Image, out)
	}

	t.Run("bad input", func(t *testing.T) {
		home := userHome(t)
		missing := base + "/no-such-release.json"
		_, stderr, err := asUser(home, skiff, "machine", "init", "--image", missing+"@sha256:"+strings.Repeat("0", 64))
		if line := lastLine(stderr); err == nil || !strings.Contains(line, missing+": 404") || !strings.Contains(line, "check the image URL") {
			t.Errorf("404: want the URL and what to do, got %v: %q", err, stderr)
		}
		t.Logf("404: %s", lastLine(stderr))
		// An index with no image for this host's architecture.
		other := filepath.Join(t.TempDir(), images.IndexName)
		idx, _ := os.ReadFile(filepath.Join(dist, images.IndexName))
		os.WriteFile(other, bytes.ReplaceAll(idx, []byte(`"arch": "`+runtime.GOARCH+`"`), []byte(`"arch": "s390x"`)), 0o644)
		_, stderr, err = asUser(home, skiff, "machine", "init", "--image", other)
		if line := lastLine(stderr); err == nil || !strings.Contains(line, "none for "+runtime.GOARCH+" (this host)") || !strings.Contains(line, "s390x") {
			t.Errorf("other architecture: want a refusal listing the index's architectures, got %v: %q", err, stderr)
		}
		t.Logf("other architecture: %s", lastLine(stderr))
		// One byte flipped in a served file: refused, naming it, nothing installed.
		flipped := images.IndexName[:len(images.IndexName)-len(".json")] + "_" + runtime.GOARCH + "_initrd.img.zst"
		srv.set(func() { srv.flip = flipped })
		_, stderr, err = asUser(home, skiff, "machine", "init")
		srv.set(func() { srv.flip = "" })
		if line := lastLine(stderr); err == nil || !strings.Contains(line, flipped) || !strings.Contains(line, "is corrupt") {
			t.Errorf("flipped byte: want a one-line refusal naming %s, got %v: %q", flipped, err, stderr)
		}
		t.Logf("flipped byte: %s", lastLine(stderr))
		if got, _ := filepath.Glob(filepath.Join(home, ".local/share/skiff/cache/images/sha256-*")); len(got) != 0 {
			t.Errorf("a refused image was installed: %v", got)
		}
		if out, _, _ := asUser(home, skiff, "machine", "list", "--format", "{{.Name}}"); strings.TrimSpace(out) != "" {
			t.Errorf("a refused init left machines: %q", out)
		}
	})

	home := userHome(t)
	e := &machinetest.Env{T: t, Home: filepath.Join(home, ".local/share/skiff"), Bin: skiff, Docker: "docker"}
	t.Cleanup(func() {
		if t.Failed() {
			e.DumpLogs()
		}
		asUser(home, skiff, "machine", "rm", "-f", "default")
	})

	// The server dies 40% into the root's download; the install stops with the partial
	// file kept, and the next init, against the server started again, resumes it.
	rootFile := images.IndexName[:len(images.IndexName)-len(".json")] + "_" + runtime.GOARCH + "_root.squashfs.zst"
	st, err := os.Stat(filepath.Join(dist, rootFile))
	if err != nil {
		t.Fatal(err)
	}
	srv.set(func() { srv.cut, srv.cutAt = rootFile, st.Size()*2/5 })
	start := time.Now()
	_, stderr, err := asUser(home, skiff, "machine", "init")
	if err == nil {
		t.Fatalf("init succeeded with the server killed during the download:\n%s", stderr)
	}
	t.Logf("init with the server killed at %d of %d bytes: %s (%s)", st.Size()*2/5, st.Size(), lastLine(stderr), time.Since(start).Round(time.Millisecond))
	if !strings.Contains(lastLine(stderr), "run the command again to resume") {
		t.Errorf("the interrupted init does not say how to go on: %s", lastLine(stderr))
	}
	partial, _ := filepath.Glob(filepath.Join(e.Home, "cache/images/.partial-*/root.squashfs.zst"))
	if len(partial) != 1 {
		t.Fatalf("no partial download kept to resume: %v", partial)
	}
	srv.start(t)
	start = time.Now()
	_, stderr, err = asUser(home, skiff, "machine", "init")
	if err != nil {
		t.Fatalf("init after the server came back: %v\n%s", err, stderr)
	}
	t.Logf("init after the restart: %s", time.Since(start).Round(time.Millisecond))
	if from := srv.resumedFrom(rootFile); from <= 0 {
		t.Errorf("the root was downloaded again from the start, not resumed (requests: %v)", srv.requests())
	} else {
		t.Logf("resumed %s from byte %d", rootFile, from)
	}
	if !strings.Contains(stderr, "root.squashfs.zst") || !strings.Contains(stderr, "MB/s") {
		t.Errorf("init showed no download progress:\n%s", stderr)
	}
	// Only what QEMU boots: not Hyper-V's boot disk or WSL's root.
	for _, r := range srv.requests() {
		if strings.Contains(r, "wsl-rootfs") || strings.Contains(r, "efi-boot") {
			t.Errorf("downloaded what this backend does not use: %s", r)
		}
	}

	// Offline from here on.
	srv.stop()
	start = time.Now()
	if _, stderr, err := asUser(home, skiff, "machine", "start"); err != nil {
		t.Fatalf("machine start: %v\n%s", err, stderr)
	}
	t.Logf("machine start: %s", time.Since(start).Round(time.Second))
	e.LoadBusybox("default")
	if out := e.MustDocker("default", "run", "--rm", machinetest.TestImage, "echo", "hello from a release"); strings.TrimSpace(out) != "hello from a release" {
		t.Fatalf("docker run: %q", out)
	}
	if _, stderr, err := asUser(home, skiff, "machine", "init", "second", "--no-home-share"); err != nil {
		t.Fatalf("init offline, from the cache: %v\n%s", err, stderr)
	}
	asUser(home, skiff, "machine", "rm", "-f", "second")
}

// checkRelease checks every file release.json lists and returns it.
func checkRelease(t *testing.T, dist string) release.Manifest {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dist, release.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	var m release.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sha256sum", "--strict", "--quiet", "-c", release.SumsName)
	cmd.Dir = dist
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c %s: %v\n%s", release.SumsName, err, out)
	}
	sums, _ := os.ReadFile(filepath.Join(dist, release.SumsName))
	for _, f := range m.Files {
		st, err := os.Stat(filepath.Join(dist, f.Name))
		if err != nil || st.Size() != f.Size || !strings.Contains(string(sums), f.SHA256+"  "+f.Name+"\n") {
			t.Errorf("%s: release.json says %d bytes, sha256 %s: %v", f.Name, f.Size, f.SHA256, err)
		}
	}
	return m
}

// installDeb installs the release's .deb for this host into a clean root with dpkg, its
// maintainer scripts run against that root, and returns its skiff. Nothing
// lands in the host's /usr; the package is purged again at the end.
func installDeb(t *testing.T, dist, version string) (skiff string) {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "usr/share/bash-completion/completions"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644)
	dpkg := func(args ...string) string {
		return mustRun(t, "dpkg", append([]string{"--root=" + root, "--force-script-chrootless", "--log=/dev/null"}, args...)...)
	}
	deb := filepath.Join(dist, fmt.Sprintf("skiff_%s_%s.deb", strings.ReplaceAll(version, "-", "~"), runtime.GOARCH))
	dpkg("-i", deb)
	t.Cleanup(func() {
		dpkg("--purge", "skiff")
		if _, err := os.Stat(filepath.Join(root, "usr/share/bash-completion/completions/skiff")); err == nil {
			t.Error("purging the package left its bash completion")
		}
	})
	// postinst ran the installed binary for the completions.
	if st, err := os.Stat(filepath.Join(root, "usr/share/bash-completion/completions/skiff")); err != nil || st.Size() == 0 {
		t.Errorf("the package's postinst made no bash completion: %v", err)
	}
	return filepath.Join(root, "usr/bin/skiff")
}

// userHome is a fresh, short HOME (the machine's sockets live under it).
func userHome(t *testing.T) string {
	t.Helper()
	home, err := os.MkdirTemp("", "skh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	return home
}

// asUser runs skiff as a user with HOME and nothing of Skiff's in the environment.
func asUser(home, skiff string, args ...string) (stdout, stderr string, err error) {
	env := []string{"HOME=" + home}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k != "HOME" && !strings.HasPrefix(k, "SKIFF_") && !strings.HasPrefix(k, "XDG_") && !strings.HasPrefix(k, "DOCKER_") {
			env = append(env, kv)
		}
	}
	cmd := exec.Command(skiff, args...)
	cmd.Env = env
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// lastLine is the last line of s (the error, after any progress).
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// releaseServer serves a release folder as a static server does (Range included), and
// can be killed mid-download, started again on its address, and made to flip a byte.
type releaseServer struct {
	dist, addr string

	mu    sync.Mutex
	srv   *http.Server
	flip  string // this file is served with one byte changed
	cut   string // the server dies once cutAt bytes of this file are out
	cutAt int64
	log   []string // "NAME RANGE"
}

func (s *releaseServer) set(f func()) { s.mu.Lock(); f(); s.mu.Unlock() }

func (s *releaseServer) start(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the address may still be held briefly after a kill
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s}
	s.set(func() { s.srv = srv })
	go srv.Serve(ln)
}

func (s *releaseServer) stop() {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

func (s *releaseServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.log...)
}

// resumedFrom is the first byte of the last Range request for name, or 0.
func (s *releaseServer) resumedFrom(name string) int64 {
	var from int64
	for _, r := range s.requests() {
		var n int64
		if _, err := fmt.Sscanf(r, name+" bytes=%d-", &n); err == nil {
			from = n
		}
	}
	return from
}

func (s *releaseServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := path.Base(r.URL.Path)
	s.mu.Lock()
	s.log = append(s.log, name+" "+r.Header.Get("Range"))
	flip := name == s.flip
	cut := name == s.cut
	if cut {
		s.cut = "" // once
	}
	at := s.cutAt
	s.mu.Unlock()
	f, err := os.Open(filepath.Join(s.dist, name))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	var content io.ReadSeeker = f
	if flip {
		data, _ := io.ReadAll(f)
		data[len(data)/2] ^= 0x01
		content = bytes.NewReader(data)
	}
	if cut {
		w = &killWriter{ResponseWriter: w, left: at, kill: s.stop}
	}
	http.ServeContent(w, r, name, time.Time{}, content)
}

// killWriter lets left bytes through and then kills the whole server.
type killWriter struct {
	http.ResponseWriter
	left int64
	kill func()
}

func (k *killWriter) Write(b []byte) (int, error) {
	if int64(len(b)) > k.left {
		b = b[:k.left]
	}
	n, err := k.ResponseWriter.Write(b)
	k.left -= int64(n)
	if k.left <= 0 {
		k.ResponseWriter.(http.Flusher).Flush() // the client has what went out, then nothing
		k.kill()
		return n, errors.New("the server was killed")
	}
	return n, err
}
