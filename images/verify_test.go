package images

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// installed installs the fixture and waits out the timestamp tick, so that what the
// next Verify hashes it also records.
func installed(t *testing.T) (*Installed, VerifyOptions) {
	t.Helper()
	src, _, _ := fixture(t)
	inst, err := Install(context.Background(), src, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	return inst, VerifyOptions{Digest: inst.Digest, Source: src}
}

func verifyOK(t *testing.T, dir string, opt VerifyOptions) []string {
	t.Helper()
	v, err := Verify(context.Background(), dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	return v.Hashed
}

func wantChanged(t *testing.T, err error, file, why string) {
	t.Helper()
	var ce *ChangedError
	if !errors.Is(err, ErrImageChanged) || !errors.As(err, &ce) || ce.File != file {
		t.Fatalf("want %s named as changed, got %v", file, err)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "image file "+file+" in ") || !strings.Contains(msg, why) ||
		!strings.Contains(msg, "reinstall with skiff machine init --image ") {
		t.Fatalf("not the one-line refusal naming %s (%s): %q", file, why, msg)
	}
}

func TestVerifyUntouchedImageIsNotHashedAgain(t *testing.T) {
	inst, opt := installed(t)
	verifyOK(t, inst.Dir, opt) // reads whatever the install could not record
	if hashed := verifyOK(t, inst.Dir, opt); len(hashed) != 0 {
		t.Fatalf("unchanged files read again: %v", hashed)
	}
}

func TestVerifyFlippedByte(t *testing.T) {
	inst, opt := installed(t)
	verifyOK(t, inst.Dir, opt)
	p := filepath.Join(inst.Dir, "root.squashfs")
	st, _ := os.Stat(p)
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 1
	os.WriteFile(p, b, 0o644)
	// Setting the mtime back does not hide the write: the change time and the digest do.
	os.Chtimes(p, st.ModTime(), st.ModTime())
	_, err := Verify(context.Background(), inst.Dir, opt)
	wantChanged(t, err, "root.squashfs", "does not match its digest")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("the changed file was removed: %v", err)
	}
	// And the refusal stands at the next boot: a failed check records nothing.
	_, err = Verify(context.Background(), inst.Dir, opt)
	wantChanged(t, err, "root.squashfs", "does not match its digest")
}

func TestVerifyTouchedFileIsHashedAndPasses(t *testing.T) {
	inst, opt := installed(t)
	verifyOK(t, inst.Dir, opt)
	p := filepath.Join(inst.Dir, "vmlinuz")
	later := time.Now().Add(-time.Hour)
	os.Chtimes(p, later, later)
	time.Sleep(100 * time.Millisecond) // past the tick of the touch's change time
	if hashed := verifyOK(t, inst.Dir, opt); !slices.Equal(hashed, []string{"vmlinuz"}) {
		t.Fatalf("after a touch, read %v, want just vmlinuz", hashed)
	}
	if hashed := verifyOK(t, inst.Dir, opt); len(hashed) != 0 {
		t.Fatalf("the touched file's new fingerprint was not recorded: read %v again", hashed)
	}
}

func TestVerifyReplacedFileSameTimes(t *testing.T) {
	inst, opt := installed(t)
	verifyOK(t, inst.Dir, opt)
	// A file swapped for another of the same size and times is a new file (id, ctime).
	p := filepath.Join(inst.Dir, "initrd.img")
	st, _ := os.Stat(p)
	tmp := p + ".new"
	os.WriteFile(tmp, []byte(strings.Repeat("J", int(st.Size()))), 0o644)
	os.Chtimes(tmp, st.ModTime(), st.ModTime())
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	_, err := Verify(context.Background(), inst.Dir, opt)
	wantChanged(t, err, "initrd.img", "does not match its digest")
}

func TestVerifyManifestAgainstRecordedDigest(t *testing.T) {
	inst, opt := installed(t)
	bad := opt
	bad.Digest = "sha256:" + strings.Repeat("0", 64)
	_, err := Verify(context.Background(), inst.Dir, bad)
	wantChanged(t, err, "manifest.json", "does not match its digest")
	if !strings.Contains(err.Error(), opt.Source) {
		t.Fatalf("the advice does not name the image's source: %v", err)
	}
	// A manifest rewritten to list other digests is caught by the recorded digest.
	p := filepath.Join(inst.Dir, "manifest.json")
	raw, _ := os.ReadFile(p)
	os.WriteFile(p, append(raw, ' '), 0o644)
	_, err = Verify(context.Background(), inst.Dir, opt)
	wantChanged(t, err, "manifest.json", "does not match its digest")
	if _, err := VerifyManifest(inst.Dir, "nonsense"); err == nil || errors.Is(err, ErrImageChanged) {
		t.Fatalf("a malformed expected digest: %v", err)
	}
}

func TestVerifyMissingFiles(t *testing.T) {
	inst, opt := installed(t)
	withEFI := opt
	withEFI.Roles = []string{RoleEFIBoot}
	verifyOK(t, inst.Dir, withEFI) // the manifest lists no boot disk: nothing to miss
	os.Remove(filepath.Join(inst.Dir, "vmlinuz"))
	_, err := Verify(context.Background(), inst.Dir, opt)
	wantChanged(t, err, "vmlinuz", "is missing")
}

func TestVerifyIgnoresUntrustedRecord(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the record's trust rests on the profile's ACL on Windows")
	}
	inst, opt := installed(t)
	verifyOK(t, inst.Dir, opt)
	os.Chmod(recordPath(inst.Dir), 0o666)
	if hashed := verifyOK(t, inst.Dir, opt); len(hashed) != 3 {
		t.Fatalf("a record others can write was believed: read only %v", hashed)
	}
}

func TestVerifyCancelled(t *testing.T) {
	inst, opt := installed(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Verify(ctx, inst.Dir, opt); !errors.Is(err, context.Canceled) {
		t.Fatalf("want the cancellation, got %v", err)
	}
}

// fakeBzImage wraps elf as an x86 bzImage with a zstd payload, as ExtractVMLinux reads it.
func fakeBzImage(elf []byte) []byte {
	enc, _ := zstd.NewWriter(nil)
	payload := enc.EncodeAll(elf, nil)
	payload = binary.LittleEndian.AppendUint32(payload, uint32(len(elf)))
	bz := make([]byte, 1024)
	bz[0x1f1] = 1 // one setup sector: the payload's offsets count from byte 1024
	copy(bz[0x202:], "HdrS")
	binary.LittleEndian.PutUint32(bz[0x248:], 0)
	binary.LittleEndian.PutUint32(bz[0x24c:], uint32(len(payload)))
	return append(bz, payload...)
}

// The uncompressed kernel QEMU boots in place of vmlinuz is checked as well.
func TestVerifyDerivedVMLinux(t *testing.T) {
	src, files, _ := fixture(t)
	files["vmlinuz"] = fakeBzImage([]byte("\x7fELF" + strings.Repeat("k", 200_000)))
	os.WriteFile(filepath.Join(src, "vmlinuz"), files["vmlinuz"], 0o644)
	raw, _ := os.ReadFile(filepath.Join(src, "manifest.json"))
	var m Manifest
	json.Unmarshal(raw, &m)
	for i, f := range m.Files {
		if f.Role == RoleKernel {
			sum := sha256.Sum256(files["vmlinuz"])
			m.Files[i].Size, m.Files[i].SHA256 = int64(len(files["vmlinuz"])), hex.EncodeToString(sum[:])
		}
	}
	raw, _ = json.Marshal(m)
	os.WriteFile(filepath.Join(src, "manifest.json"), raw, 0o644)
	inst, err := Install(context.Background(), src, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(inst.Dir, VMLinuxName)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no vmlinux derived: %v", err)
	}
	opt := VerifyOptions{Digest: inst.Digest}
	verifyOK(t, inst.Dir, opt)
	b, _ := os.ReadFile(p)
	b[len(b)-1] ^= 1
	os.WriteFile(p, b, 0o644)
	_, err = Verify(context.Background(), inst.Dir, opt)
	wantChanged(t, err, VMLinuxName, "does not match its digest")
}
