package release

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestReproducibleRelease builds the release twice (build.sh, images included: their
// fast stage runs each time, the root comes from the cache) and wants the same bytes.
// Minutes of work, so only with SKIFF_RELEASE_REPRO=1. SKIFF_RELEASE_BASE is the URL
// the release is built for (default http://127.0.0.1:18787), SKIFF_RELEASE_KEEP a folder
// to keep the first build in (CI installs it next: TestReleaseInstall), and
// SKIFF_RELEASE_ARCHES the image architectures (build.sh). The second build takes the
// binaries from Go's build cache unless SKIFF_RELEASE_REPRO_COLD=1 (minutes more): a
// fresh cache compiles everything again.
func TestReproducibleRelease(t *testing.T) {
	if os.Getenv("SKIFF_RELEASE_REPRO") != "1" {
		t.Skip("builds the release twice (minutes): set SKIFF_RELEASE_REPRO=1")
	}
	if runtime.GOOS != "linux" {
		t.Skip("build.sh runs on Linux")
	}
	base := os.Getenv("SKIFF_RELEASE_BASE")
	if base == "" {
		base = "http://127.0.0.1:18787"
	}
	root, _ := filepath.Abs("../..")
	before := treeState(t, root)
	work := t.TempDir()
	var sums [2]string
	for i, name := range []string{"a", "b"} {
		dist := filepath.Join(work, name)
		start := time.Now()
		cmd := exec.Command(filepath.Join(root, "installer/release/build.sh"), "0.0.0-repro", base, dist)
		cmd.Dir = root
		if i == 1 && os.Getenv("SKIFF_RELEASE_REPRO_COLD") == "1" {
			// Go's build cache would hand the second build the first one's binaries.
			cmd.Env = append(os.Environ(), "GOCACHE="+filepath.Join(work, "gocache"))
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("build %s: %v\n%s", name, err, out)
		}
		t.Logf("build %s: %s", name, time.Since(start).Round(time.Second))
		b, err := os.ReadFile(filepath.Join(dist, SumsName))
		if err != nil {
			t.Fatal(err)
		}
		sums[i] = string(b)
		if i == 0 {
			t.Logf("%s", out[max(0, len(out)-600):]) // what build.sh said it skipped, and the size
		}
	}
	if treeState(t, root) != before {
		t.Fatal("the source tree changed between the two builds (a commit or an edit): run this on a checkout nobody else changes meanwhile")
	}
	if sums[0] != sums[1] {
		a, b := strings.Split(sums[0], "\n"), strings.Split(sums[1], "\n")
		for i := range min(len(a), len(b)) {
			if a[i] != b[i] {
				t.Errorf("differs between two builds: %s / %s", a[i], b[i])
			}
		}
		t.Fatalf("two builds of one commit are not the same bytes")
	}
	t.Logf("two builds are the same bytes: %d files", strings.Count(sums[0], "\n"))
	if keep := os.Getenv("SKIFF_RELEASE_KEEP"); keep != "" {
		os.RemoveAll(keep)
		if err := os.Rename(filepath.Join(work, "a"), keep); err != nil {
			// Another file system: copy.
			if out, err := exec.Command("cp", "-a", filepath.Join(work, "a"), keep).CombinedOutput(); err != nil {
				t.Fatalf("keep the release in %s: %v\n%s", keep, err, out)
			}
		}
	}
}

// treeState is what the builds are made from: the commit and every uncommitted change.
func treeState(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{{"rev-parse", "HEAD"}, {"status", "--porcelain"}, {"diff", "HEAD"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("git %v: %v", args, err)
		}
		b.Write(out)
	}
	return b.String()
}
