package images

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// The real kernel from `make image`, when it has been built.
func TestExtractVMLinuxFromBuiltImage(t *testing.T) {
	k := filepath.Join("out", runtime.GOARCH, "vmlinuz")
	bz, err := os.ReadFile(k)
	if err != nil || runtime.GOARCH != "amd64" {
		t.Skip("no amd64 image built (make image)")
	}
	elf, err := ExtractVMLinux(bz)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(elf, []byte("\x7fELF")) || len(elf) < len(bz) {
		t.Fatalf("extracted %d bytes, not an uncompressed ELF", len(elf))
	}
}

func TestExtractVMLinuxRejectsOtherFiles(t *testing.T) {
	if _, err := ExtractVMLinux(bytes.Repeat([]byte{0}, 4096)); err == nil {
		t.Fatal("zeros accepted as a bzImage")
	}
}
