//go:build linux

package images

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestEngineLayerBin runs enginelayer.sh's engine_layer: without --engine-bin the layer is
// the cached root's, byte for byte; with it, a program of the directory replaces the
// packaged one of the same name where the layer has it (usr/sbin), a new one goes to
// usr/bin, the rest of the layer stays, and a second run takes the cached result.
func TestEngineLayerBin(t *testing.T) {
	for _, tool := range []string{"mksquashfs", "unsquashfs", "zstd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s", tool)
		}
	}
	tmp := t.TempDir()
	cache, root, out, bin, tree := filepath.Join(tmp, "cache"), filepath.Join(tmp, "root"), filepath.Join(tmp, "out"), filepath.Join(tmp, "bin"), filepath.Join(tmp, "tree")
	for _, d := range []string{cache, root, out, bin, filepath.Join(tree, "usr", "sbin"), filepath.Join(tree, "usr", "bin")} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(filepath.Join(tree, "usr", "sbin", "dockerd"), []byte("packaged dockerd"), 0o755)
	os.WriteFile(filepath.Join(tree, "usr", "bin", "containerd"), []byte("packaged containerd"), 0o755)
	os.WriteFile(filepath.Join(bin, "dockerd"), []byte("built dockerd"), 0o755)
	os.WriteFile(filepath.Join(bin, "docker-extra"), []byte("built extra"), 0o755)
	sh := func(script string, args ...string) string {
		t.Helper()
		cmd := exec.Command("bash", append([]string{"-c", `set -euo pipefail; . ./rootfs.sh; . ./enginelayer.sh; ` + script, "bash"}, args...)...)
		cmd.Env = append(os.Environ(), "CACHE="+cache, "ROOT_DIR="+root, "OUT="+out, "ARCH=amd64", "ROOT_KEY=k1")
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v: %s", script, err, b)
		}
		return string(b)
	}
	sh(`make_squashfs "$1" "$ROOT_DIR/engine-docker.squashfs" && pack "$ROOT_DIR/engine-docker.squashfs"`, tree)
	cached, _ := os.ReadFile(filepath.Join(root, "engine-docker.squashfs.zst"))

	sh(`declare -A ENGINE_BIN=(); engine_layer docker`)
	if got, _ := os.ReadFile(filepath.Join(out, "engine-docker.squashfs.zst")); string(got) != string(cached) {
		t.Fatal("without --engine-bin the layer is not the cached root's")
	}
	cat := func(name string) string {
		return sh(`zstd -q -dc --long=27 "$OUT/engine-docker.squashfs.zst" >"$OUT/l.sq" && unsquashfs -q -cat "$OUT/l.sq" "$1" 2>/dev/null || true; rm -f "$OUT/l.sq"`, name)
	}
	log := sh(`declare -A ENGINE_BIN=([docker]=$1); engine_layer docker 2>&1`, bin)
	for name, want := range map[string]string{"usr/sbin/dockerd": "built dockerd", "usr/bin/docker-extra": "built extra", "usr/bin/containerd": "packaged containerd", "usr/bin/dockerd": ""} {
		if got := cat(name); got != want {
			t.Errorf("%s in the layer built with --engine-bin: %q, want %q", name, got, want)
		}
	}
	if !strings.Contains(log, "programs of "+bin) {
		t.Errorf("the first build with --engine-bin does not say so: %q", log)
	}
	if log := sh(`declare -A ENGINE_BIN=([docker]=$1); engine_layer docker 2>&1`, bin); strings.Contains(log, "programs of") {
		t.Errorf("the second build with the same programs rebuilt the layer: %q", log)
	}
}
