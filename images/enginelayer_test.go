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
	needLayerTools(t)
	tmp := t.TempDir()
	cache, root, out, bin, tree := filepath.Join(tmp, "cache"), filepath.Join(tmp, "root"), filepath.Join(tmp, "out"), filepath.Join(tmp, "bin"), filepath.Join(tmp, "tree")
	for _, d := range []string{cache, root, out, bin, filepath.Join(tree, "usr", "sbin"), filepath.Join(tree, "usr", "bin")} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(filepath.Join(tree, "usr", "sbin", "dockerd"), []byte("packaged dockerd"), 0o755)
	os.WriteFile(filepath.Join(tree, "usr", "bin", "containerd"), []byte("packaged containerd"), 0o755)
	os.WriteFile(filepath.Join(bin, "dockerd"), []byte("built dockerd"), 0o755)
	os.WriteFile(filepath.Join(bin, "docker-extra"), []byte("built extra"), 0o755)
	sh := layerScript(t, cache, root, out)
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

// TestEngineLayerEngineDir runs engine_layer with an engine's directory as enginebuild.sh
// makes it: bin/'s program and its link go in (the link stays a link, to where its
// program went), and etc/'s files go over the root's configuration in the layer.
func TestEngineLayerEngineDir(t *testing.T) {
	needLayerTools(t)
	tmp := t.TempDir()
	cache, root, out, eng, tree := filepath.Join(tmp, "cache"), filepath.Join(tmp, "root"), filepath.Join(tmp, "out"), filepath.Join(tmp, "engine"), filepath.Join(tmp, "tree")
	for _, d := range []string{cache, root, out, filepath.Join(eng, "bin"), filepath.Join(eng, "etc", "docker"), filepath.Join(tree, "usr", "sbin"), filepath.Join(tree, "etc", "docker")} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(filepath.Join(tree, "usr", "sbin", "dockerd"), []byte("packaged dockerd"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc", "docker", "daemon.json"), []byte("packaged config"), 0o644)
	os.WriteFile(filepath.Join(eng, "bin", "engine"), []byte("built engine"), 0o755)
	os.Symlink("engine", filepath.Join(eng, "bin", "dockerd"))
	os.WriteFile(filepath.Join(eng, "etc", "docker", "daemon.json"), []byte("built config"), 0o600)
	sh := layerScript(t, cache, root, out)
	sh(`make_squashfs "$1" "$ROOT_DIR/engine-docker.squashfs" && pack "$ROOT_DIR/engine-docker.squashfs"`, tree)
	os.WriteFile(filepath.Join(out, "trim-report.txt"), []byte("         100  var/log/*\n"), 0o644)
	sh(`declare -A ENGINE_BIN=([docker]=$1); engine_layer docker`, eng)
	if b, _ := os.ReadFile(filepath.Join(out, "trim-report.txt")); !strings.Contains(string(b), "engine-docker layer, packed: ") || !strings.Contains(string(b), "dockerd engine of "+filepath.Join(eng, "bin")+" and its etc/") {
		t.Errorf("trim-report.txt does not say what the layer with the engine saves:\n%s", b)
	}
	layer := filepath.Join(tmp, "layer")
	sh(`zstd -q -dc --long=27 "$OUT/engine-docker.squashfs.zst" >"$OUT/l.sq" && unsquashfs -q -n -d "$1" "$OUT/l.sq" >/dev/null`, layer)
	for name, want := range map[string]string{"usr/bin/engine": "built engine", "etc/docker/daemon.json": "built config"} {
		if got, err := os.ReadFile(filepath.Join(layer, name)); string(got) != want {
			t.Errorf("%s in the layer: %q (%v), want %q", name, got, err, want)
		}
	}
	if target, err := os.Readlink(filepath.Join(layer, "usr", "sbin", "dockerd")); target != "/usr/bin/engine" {
		t.Errorf("usr/sbin/dockerd in the layer: link to %q (%v), want /usr/bin/engine", target, err)
	}
	if fi, err := os.Stat(filepath.Join(layer, "etc", "docker", "daemon.json")); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("etc/docker/daemon.json in the layer: %v, %v; want readable by all (0644)", fi, err)
	}
}

// TestDockerRelease runs images/engine/build.sh's docker_release, which names the Docker
// release a moby/v2 module version is the commit of, on releases/versions.yaml as moby
// keeps it: v2.0.0-beta.21 is tag docker-v29.7.1's commit, whose file says next 29.7.1.
func TestDockerRelease(t *testing.T) {
	tmp := t.TempDir()
	run := func(yaml string) (string, error) {
		f := filepath.Join(tmp, "versions.yaml")
		os.WriteFile(f, []byte(yaml), 0o644)
		cmd := exec.Command("bash", "-c", `set -euo pipefail; source <(sed -n '/^docker_release()/,/^}/p' engine/build.sh); docker_release "$1"`, "bash", f)
		b, err := cmd.Output()
		return strings.TrimSpace(string(b)), err
	}
	if got, err := run("---\ndocker:\n  last: \"29.7.0\"\n  next: \"29.7.1\"\n"); err != nil || got != "29.7.1" {
		t.Errorf("docker_release of beta.21's versions.yaml: %q, %v; want 29.7.1", got, err)
	}
	if got, err := run("---\ncli:\n  next: \"1.2.3\"\ndocker:\n  last: \"29.8.0\"\n  next: \"29.8.1\"\nother:\n  next: \"9.9.9\"\n"); err != nil || got != "29.8.1" {
		t.Errorf("docker_release with other sections: %q, %v; want 29.8.1", got, err)
	}
	for _, bad := range []string{"---\ndocker:\n  last: \"29.8.0\"\n", "---\ncli:\n  next: \"1.2.3\"\n", "---\ndocker:\n  next: \"master\"\n"} {
		if got, err := run(bad); err == nil {
			t.Errorf("docker_release of %q: %q, want a refusal", bad, got)
		}
	}
}

// needLayerTools skips t on a host without the tools a layer is built with.
func needLayerTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"mksquashfs", "unsquashfs", "zstd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s", tool)
		}
	}
}

// layerScript returns a runner of bash scripts with rootfs.sh and enginelayer.sh loaded,
// building an amd64 layer from the root cache root into out; it returns their output.
func layerScript(t *testing.T, cache, root, out string) func(script string, args ...string) string {
	return func(script string, args ...string) string {
		t.Helper()
		cmd := exec.Command("bash", append([]string{"-c", `set -euo pipefail; . ./rootfs.sh; . ./enginelayer.sh; ` + script, "bash"}, args...)...)
		cmd.Env = append(os.Environ(), "CACHE="+cache, "ROOT_DIR="+root, "OUT="+out, "ARCH=amd64", "ROOT_KEY=k1")
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v: %s", script, err, b)
		}
		return string(b)
	}
}
