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
