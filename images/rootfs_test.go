//go:build linux

package images

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestUnsignModules runs rootfs.sh's unsign_modules on a module with the kernel's appended
// signature trailer and on one without: the first must come back as exactly the module's
// ELF bytes, the second untouched.
func TestUnsignModules(t *testing.T) {
	dir := t.TempDir()
	body := bytes.Repeat([]byte("\x7fELF module body "), 300)
	sig := bytes.Repeat([]byte{0xa5}, 287)
	// struct module_signature: algo, hash, id_type, signer_len, key_id_len, pad[3], be32 sig_len.
	info := make([]byte, 12)
	info[2] = 2 // PKEY_ID_PKCS7
	binary.BigEndian.PutUint32(info[8:], uint32(len(sig)))
	signed := append(append(append(append([]byte{}, body...), sig...), info...), "~Module signature appended~\n"...)
	os.MkdirAll(filepath.Join(dir, "kernel", "fs"), 0o755)
	os.WriteFile(filepath.Join(dir, "kernel", "fs", "signed.ko"), signed, 0o644)
	os.WriteFile(filepath.Join(dir, "plain.ko"), body, 0o644)
	os.WriteFile(filepath.Join(dir, "tiny.ko"), []byte("x"), 0o644)
	cmd := exec.Command("bash", "-c", `. ./rootfs.sh && unsign_modules "$1"`, "bash", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("unsign_modules: %v: %s", err, out)
	}
	for name, want := range map[string][]byte{"kernel/fs/signed.ko": body, "plain.ko": body, "tiny.ko": []byte("x")} {
		got, _ := os.ReadFile(filepath.Join(dir, name))
		if !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes after unsign_modules, want %d", name, len(got), len(want))
		}
	}
}

// TestSplitEngines runs rootfs.sh's split_engines on a root with a fake dpkg database: each
// engine's layer takes the files of its packages and of what only they need (through an
// alternative and a virtual package), what another engine or the base also needs stays
// in the root, shared directories are in both, and the root says it wants a layer.
func TestSplitEngines(t *testing.T) {
	here, root, out := t.TempDir(), t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(here, "packages.list"), []byte("# test\nsshd\nengine-a @a\nengine-b @b\nkernel [arm64]\n"), 0o644)
	pkgs := []struct{ name, fields string }{
		{"libc", "Essential: yes\n"},
		{"sshd", "Depends: libc, libcrypto\n"},
		{"libcrypto", ""},
		{"engine-a", "Depends: libc (>= 2), missing-pkg | liba-only, virt-a, libshared\n"},
		{"liba-only", ""},
		{"liba-prov", "Provides: virt-a\n"},
		{"engine-b", "Pre-Depends: libshared\nDepends: libcrypto\n"},
		{"libshared", ""},
		{"unrelated", ""},
	}
	files := map[string][]string{
		"libc":      {"/usr", "/usr/lib", "/usr/lib/libc.so.6"},
		"sshd":      {"/usr", "/usr/sbin", "/usr/sbin/sshd"},
		"libcrypto": {"/usr", "/usr/lib", "/usr/lib/libcrypto.so.3"},
		"engine-a":  {"/usr", "/usr/bin", "/usr/bin/engine-a", "/usr/lib/engine-a", "/usr/lib/engine-a/helper", "/etc", "/etc/engine-a", "/etc/engine-a/conf"},
		"liba-only": {"/usr", "/usr/lib", "/usr/lib/liba.so.1"},
		"liba-prov": {"/usr", "/usr/lib", "/usr/lib/libprov.so.1"},
		"engine-b":  {"/usr", "/usr/bin", "/usr/bin/engine-b"},
		"libshared": {"/usr", "/usr/lib", "/usr/lib/libshared.so.1"},
		"unrelated": {"/usr", "/usr/share", "/usr/share/unrelated"},
	}
	admin := filepath.Join(root, "var", "lib", "dpkg")
	os.MkdirAll(filepath.Join(admin, "info"), 0o755)
	var status strings.Builder
	for _, p := range pkgs {
		fmt.Fprintf(&status, "Package: %s\nStatus: install ok installed\nPriority: optional\nMaintainer: t\nDescription: t\nVersion: 1\nArchitecture: amd64\n%s\n", p.name, p.fields)
		os.WriteFile(filepath.Join(admin, "info", p.name+".list"), []byte(strings.Join(files[p.name], "\n")+"\n"), 0o644)
		for _, f := range files[p.name] {
			if strings.Contains(filepath.Base(f), ".") || strings.Contains(f, "/bin/") || strings.Contains(f, "/sbin/") || strings.HasSuffix(f, "helper") || strings.HasSuffix(f, "conf") || strings.HasPrefix(f, "/usr/share/") {
				os.MkdirAll(filepath.Join(root, filepath.Dir(f)), 0o755)
				os.WriteFile(filepath.Join(root, f), []byte(p.name), 0o644)
			}
		}
	}
	os.WriteFile(filepath.Join(admin, "status"), []byte(status.String()), 0o644)
	cmd := exec.Command("bash", "-c", `set -euo pipefail; . ./rootfs.sh; HERE=$1 ARCH=amd64 VARIANT=minimal; split_engines "$2" "$3"`, "bash", here, root, out)
	report, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("split_engines: %v: %s", err, report)
	}
	want := map[string][]string{
		root:                           {"usr/lib/libc.so.6", "usr/sbin/sshd", "usr/lib/libcrypto.so.3", "usr/lib/libshared.so.1", "usr/share/unrelated", "usr/lib/skiff/engine-layer"},
		filepath.Join(out, "engine-a"): {"usr/bin/engine-a", "usr/lib/engine-a/helper", "etc/engine-a/conf", "usr/lib/liba.so.1", "usr/lib/libprov.so.1"},
		filepath.Join(out, "engine-b"): {"usr/bin/engine-b"},
	}
	var got []string
	for dir, names := range want {
		for _, n := range names {
			if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
				t.Errorf("%s is not in %s", n, dir)
			}
		}
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && !strings.Contains(p, "/var/lib/dpkg/") {
				got = append(got, p)
			}
			return nil
		})
	}
	if n := len(want[root]) + len(want[filepath.Join(out, "engine-a")]) + len(want[filepath.Join(out, "engine-b")]); len(got) != n {
		t.Errorf("the trees hold %d files, want %d (each in one place): %v", len(got), n, got)
	}
	for _, gone := range []string{"usr/lib/engine-a", "etc/engine-a"} {
		if _, err := os.Stat(filepath.Join(root, gone)); err == nil {
			t.Errorf("the root keeps %s, which only engine-a has", gone)
		}
	}
	if !strings.Contains(string(report), "moved to the engine-a layer: engine-a liba-only liba-prov\n") {
		t.Errorf("the report does not name what engine-a's layer took:\n%s", report)
	}
}

// TestRuncIsCrun: rootfs.sh's runc_is_crun leaves a link to crun where the docker layer
// had runc's binary and reports the binary's size; a layer with no runc binary (none, or
// already the link) fails the build rather than pass unnoticed.
func TestRuncIsCrun(t *testing.T) {
	layer := t.TempDir()
	os.MkdirAll(filepath.Join(layer, "usr", "sbin"), 0o755)
	os.WriteFile(filepath.Join(layer, "usr", "sbin", "runc"), bytes.Repeat([]byte("r"), 1234), 0o755)
	run := func() (string, error) {
		out, err := exec.Command("bash", "-c", `set -euo pipefail; . ./rootfs.sh; runc_is_crun "$1"`, "bash", layer).CombinedOutput()
		return string(out), err
	}
	if out, err := run(); err != nil || out != fmt.Sprintf("%12d  usr/sbin/runc (engine-docker layer; now a link to crun)\n", 1234) {
		t.Fatalf("runc_is_crun: %v: %q", err, out)
	}
	if l, err := os.Readlink(filepath.Join(layer, "usr", "sbin", "runc")); err != nil || l != "/usr/bin/crun" {
		t.Errorf("usr/sbin/runc links to %q (%v), want /usr/bin/crun", l, err)
	}
	if out, err := run(); err == nil || !strings.Contains(out, "no runc binary") {
		t.Errorf("runc_is_crun over the link: %v: %q; want it to fail", err, out)
	}
}

// TestElfMissing: rootfs.sh's elf_missing names the library a program needs that the tree
// lacks, and nothing once the tree (or a second tree beside it) has it.
func TestElfMissing(t *testing.T) {
	ls, err := exec.LookPath("ls")
	if err != nil {
		t.Skip("no ls")
	}
	if _, err := exec.LookPath("readelf"); err != nil {
		t.Skip("no readelf (binutils)")
	}
	a, b := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(a, "usr", "bin"), 0o755)
	bin, _ := os.ReadFile(ls)
	os.WriteFile(filepath.Join(a, "usr", "bin", "ls"), bin, 0o755)
	run := func(trees ...string) string {
		out, err := exec.Command("bash", append([]string{"-c", `. ./rootfs.sh; elf_missing "$@"`, "bash"}, trees...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("elf_missing: %v: %s", err, out)
		}
		return string(out)
	}
	if out := run(a); !strings.Contains(out, "/usr/bin/ls: libc.so.6\n") {
		t.Fatalf("elf_missing on a tree without libc: %q", out)
	}
	os.MkdirAll(filepath.Join(b, "usr", "lib"), 0o755)
	for _, lib := range strings.Fields(run(a)) {
		if strings.HasSuffix(lib, ":") {
			continue
		}
		os.WriteFile(filepath.Join(b, "usr", "lib", lib), nil, 0o644)
	}
	if out := run(a, b); out != "" {
		t.Fatalf("elf_missing with the libraries in a second tree: %q", out)
	}
}

// TestKeepModules runs rootfs.sh's keep_modules on a module tree: what modules.list names
// stays with what it needs (modules.dep), everything else goes, and the report says what
// each directory gave up.
func TestKeepModules(t *testing.T) {
	here, dir := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(here, "modules.list"), []byte("# test\nnet/bridge/*\nfs/ext4/ext4.ko\n"), 0o644)
	mods := map[string]string{
		"kernel/net/bridge/bridge.ko":       "kernel/net/802/stp.ko kernel/net/llc/llc.ko",
		"kernel/net/802/stp.ko":             "kernel/net/llc/llc.ko",
		"kernel/net/llc/llc.ko":             "",
		"kernel/fs/ext4/ext4.ko":            "kernel/fs/jbd2/jbd2.ko",
		"kernel/fs/jbd2/jbd2.ko":            "",
		"kernel/fs/btrfs/btrfs.ko":          "",
		"kernel/drivers/gpu/drm/drm.ko":     "",
		"kernel/drivers/gpu/drm/i915.ko":    "kernel/drivers/gpu/drm/drm.ko",
		"kernel/net/bridge/br_netfilter.ko": "kernel/net/bridge/bridge.ko kernel/net/802/stp.ko kernel/net/llc/llc.ko",
	}
	var dep strings.Builder
	for m, d := range mods {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(m)), 0o755)
		os.WriteFile(filepath.Join(dir, m), bytes.Repeat([]byte("m"), 1000), 0o644)
		fmt.Fprintf(&dep, "%s: %s\n", m, d)
	}
	os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep.String()), 0o644)
	out, err := exec.Command("bash", "-c", `set -euo pipefail; . ./rootfs.sh; HERE=$1; keep_modules "$2"`, "bash", here, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("keep_modules: %v: %s", err, out)
	}
	for m := range mods {
		_, err := os.Stat(filepath.Join(dir, m))
		if keep := !strings.Contains(m, "btrfs") && !strings.Contains(m, "gpu"); keep != (err == nil) {
			t.Errorf("%s: kept %v, want %v", m, err == nil, keep)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "kernel", "drivers")); err == nil {
		t.Error("the emptied kernel/drivers is still there")
	}
	for _, line := range []string{"        2000  usr/lib/modules/*/kernel/drivers/gpu (not in modules.list)", "        1000  usr/lib/modules/*/kernel/fs/btrfs (not in modules.list)"} {
		if !strings.Contains(string(out), line+"\n") {
			t.Errorf("the report lacks %q:\n%s", line, out)
		}
	}
}
