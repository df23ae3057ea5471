//go:build linux

package images

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
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
