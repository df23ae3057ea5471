package images

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
)

// VMLinuxName is the uncompressed kernel derived from an x86 bzImage at install time.
const VMLinuxName = "vmlinux"

// ExtractVMLinux returns the ELF kernel inside an x86 bzImage with a zstd payload. Booting
// it directly (PVH entry) skips the kernel's self-decompression, which takes seconds
// under software emulation; the image ships the compressed form, so downloads stay small
// and the digest still covers what is booted.
func ExtractVMLinux(bz []byte) ([]byte, error) {
	if len(bz) < 0x250 || string(bz[0x202:0x206]) != "HdrS" {
		return nil, errors.New("not an x86 bzImage")
	}
	setupSects := int(bz[0x1f1])
	if setupSects == 0 {
		setupSects = 4
	}
	pm := (setupSects + 1) * 512
	off := int(binary.LittleEndian.Uint32(bz[0x248:]))
	n := int(binary.LittleEndian.Uint32(bz[0x24c:]))
	if pm+off+n > len(bz) || n < 8 {
		return nil, errors.New("bzImage payload out of range")
	}
	payload := bz[pm+off : pm+off+n]
	if !bytes.HasPrefix(payload, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		return nil, errors.New("bzImage payload is not zstd")
	}
	// The build appends the decompressed size as 4 little-endian bytes.
	want := int(binary.LittleEndian.Uint32(payload[len(payload)-4:]))
	dec, err := zstd.NewReader(bytes.NewReader(payload[:len(payload)-4]), zstd.WithDecoderMaxMemory(1<<30))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	out, err := io.ReadAll(dec)
	if err != nil && len(out) != want {
		return nil, fmt.Errorf("decompress kernel: %w", err)
	}
	if len(out) != want || !bytes.HasPrefix(out, []byte("\x7fELF")) {
		return nil, fmt.Errorf("decompressed kernel is %d bytes, want an ELF of %d", len(out), want)
	}
	return out, nil
}

// deriveVMLinux writes vmlinux next to an installed x86 kernel when it can be extracted.
// It is an optimisation: failure leaves the image bootable from its bzImage.
func deriveVMLinux(dir string, m *Manifest) {
	if m.Arch != "amd64" {
		return
	}
	for _, f := range m.Files {
		if f.Role != "kernel" {
			continue
		}
		bz, err := os.ReadFile(filepath.Join(dir, f.InstalledName()))
		if err != nil {
			return
		}
		elf, err := ExtractVMLinux(bz)
		if err != nil {
			return
		}
		tmp := filepath.Join(dir, "."+VMLinuxName+".tmp")
		if os.WriteFile(tmp, elf, 0o644) == nil {
			os.Rename(tmp, filepath.Join(dir, VMLinuxName))
		}
	}
}
