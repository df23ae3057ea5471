package atomicfile

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "meta.json")
	for _, content := range []string{"first", "second, longer"} {
		if err := Write(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(p); string(b) != content {
			t.Fatalf("read back %q, want %q", b, content)
		}
	}
	if st, _ := os.Stat(p); runtime.GOOS != "windows" && st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
	// A folder that is gone fails, and nothing is written elsewhere.
	if err := Write(filepath.Join(dir, "nope", "x"), []byte("x"), 0o600); err == nil {
		t.Fatal("wrote into a missing folder")
	}
}

func TestSyncFiles(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ram"), []byte("state"), 0o600)
	os.Mkdir(filepath.Join(dir, "sub"), 0o700)
	if err := SyncFiles(dir); err != nil {
		t.Fatal(err)
	}
	if err := SyncFiles(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("synced a folder that is not there")
	}
}
