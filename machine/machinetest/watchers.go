package machinetest

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// WatchersImage is the file-event tests' image of real watchers: inotifywait
// (inotify-tools), Python watchdog, Node's fs.watch and chokidar, all Debian's packages,
// plus a Go program using fsnotify (./fswatch). No registry is reachable from tests, so
// it is built here: a Debian root by mmdebstrap, cached by its recipe's hash (about a
// minute cold), then the Go watcher and the scripts on top.
const WatchersImage = "skiff-test/watchers:latest"

//go:embed watchers
var watcherScripts embed.FS

// The recipe of the cached part; its hash names the cache entry.
var (
	watchersMmdebstrap = []string{"--variant=essential", "--include=inotify-tools,python3-watchdog,nodejs,node-chokidar",
		"--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
		"--dpkgopt=path-exclude=/usr/share/locale/*", "trixie"}
)

// WatchersCache is where the watchers' root is kept
// (SKIFF_TEST_IMAGE_CACHE, default /var/cache/skiff/test-images).
func WatchersCache() string {
	if d := os.Getenv("SKIFF_TEST_IMAGE_CACHE"); d != "" {
		return d
	}
	return "/var/cache/skiff/test-images"
}

// watchersBase is the cached root tarball, made when missing.
func watchersBase(t interface {
	Helper()
	Fatalf(string, ...any)
	Logf(string, ...any)
}) string {
	t.Helper()
	mirror := os.Getenv("SKIFF_DEBIAN_MIRROR")
	if mirror == "" {
		mirror = "http://deb.debian.org/debian"
	}
	sum := sha256.Sum256([]byte(strings.Join(watchersMmdebstrap, "\n")))
	dir := filepath.Join(WatchersCache(), "watchers-"+hex.EncodeToString(sum[:8]))
	root := filepath.Join(dir, "root.tar")
	if _, err := os.Stat(root); err == nil {
		return root
	}
	t.Logf("building the watchers' root in %s (mmdebstrap from %s)", dir, mirror)
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatalf("%v", err)
	}
	args := append(append([]string{"--quiet"}, watchersMmdebstrap...), filepath.Join(tmp, "root.tar"), mirror)
	if out, err := exec.Command("mmdebstrap", args...).CombinedOutput(); err != nil {
		t.Fatalf("mmdebstrap %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatalf("%v", err)
	}
	return root
}

// LoadWatchers makes WatchersImage in a machine's engine.
func (e *Env) LoadWatchers(name string) {
	e.T.Helper()
	root := watchersBase(e.T)
	base := "skiff-test/watchers-base:" + filepath.Base(filepath.Dir(root))
	if _, err := e.DockerRun(name, "image", "inspect", base); err != nil {
		e.MustDocker(name, "import", root, base)
	}
	ctx := e.T.(interface{ TempDir() string }).TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(ctx, "fswatch"), "./machine/machinetest/fswatch")
	build.Dir = RepoRoot(e.T)
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		e.T.Fatalf("build fswatch: %v\n%s", err, out)
	}
	scripts, _ := watcherScripts.ReadDir("watchers")
	for _, s := range scripts {
		b, _ := watcherScripts.ReadFile("watchers/" + s.Name())
		os.WriteFile(filepath.Join(ctx, s.Name()), b, 0o644)
	}
	dockerfile := fmt.Sprintf("FROM %s\nCOPY fswatch /usr/local/bin/fswatch\nCOPY *.js *.py /opt/watchers/\nENV NODE_PATH=/usr/share/nodejs\n", base)
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(dockerfile), 0o644)
	e.MustDocker(name, "build", "-q", "-t", WatchersImage, ctx)
}
