package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/skiff-dev/skiff/machine/atomicfile"
)

// ErrImageChanged is an installed image whose files no longer match the digests they were
// installed with: something wrote to the cache after the install.
var ErrImageChanged = errors.New("installed image does not match its digest")

// ChangedError names the file of an installed image that no longer matches, in one line.
type ChangedError struct {
	Dir, File string
	// Why is what is wrong with the file ("does not match its digest", "is missing").
	Why string
	// Source is where the image came from, for the advice; empty says PATH|URL.
	Source string
}

func (e *ChangedError) Error() string {
	src := e.Source
	if src == "" {
		src = "PATH|URL"
	}
	return fmt.Sprintf("image file %s in %s %s: reinstall with skiff machine init --image %s", e.File, e.Dir, e.Why, src)
}

func (e *ChangedError) Unwrap() error { return ErrImageChanged }

// VerifyOptions say what an installed image must match.
type VerifyOptions struct {
	// Digest is the manifest's digest as the machine recorded it at init
	// (machine.ImageRef.Digest, "sha256:HEX"). Required: it is what the file digests hang on.
	Digest string
	// Source is where the image was installed from (machine.ImageRef.Source), named in the
	// advice of an error.
	Source string
	// Roles are the optional files (RoleEFIBoot, RoleWSLRootfs) the boot needs: a missing
	// one is an error. Optional files present are verified whether listed or not.
	Roles []string
}

// Verified is what Verify checked.
type Verified struct {
	Manifest *Manifest
	// Hashed names the files read in full: their fingerprint had changed or was not
	// recorded. The others were unchanged since a check that read them.
	Hashed []string
}

// VerifyManifest reads the manifest of the installed image in dir and checks it against
// digest ("sha256:HEX" or HEX).
func VerifyManifest(dir, digest string) (*Manifest, error) {
	want := strings.ToLower(strings.TrimPrefix(digest, "sha256:"))
	if len(want) != 64 {
		return nil, fmt.Errorf("verify image in %s: no valid manifest digest given (%q)", dir, digest)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, &ChangedError{Dir: dir, File: "manifest.json", Why: "is missing"}
	}
	if err != nil {
		return nil, fmt.Errorf("guest image: %w", err)
	}
	sum := sha256.Sum256(raw)
	if hex.EncodeToString(sum[:]) != want {
		return nil, &ChangedError{Dir: dir, File: "manifest.json", Why: "does not match its digest"}
	}
	return ParseManifest(raw)
}

// Verify checks the installed image in dir before a cold boot: its manifest against
// opt.Digest and every file the VM may read against the manifest's digests. A file is
// read in full only when its fingerprint (size, mtime, ctime, file id) differs from the
// one recorded beside the image at the last full check, so an unchanged image costs a
// stat per file. Nothing is deleted or repaired: a mismatch is a *ChangedError
// (errors.Is ErrImageChanged) naming the file.
func Verify(ctx context.Context, dir string, opt VerifyOptions) (*Verified, error) {
	man, err := VerifyManifest(dir, opt.Digest)
	if err != nil {
		if ce := (*ChangedError)(nil); errors.As(err, &ce) {
			ce.Source = opt.Source
		}
		return nil, err
	}
	digest := "sha256:" + strings.ToLower(strings.TrimPrefix(opt.Digest, "sha256:"))
	v := &verifier{ctx: ctx, dir: dir, source: opt.Source, old: readRecord(dir, digest),
		now: record{Manifest: digest, Files: map[string]fingerprint{}}}
	var kernel File
	for _, f := range man.Files {
		want := f.installed()
		if f.Role == RoleKernel {
			kernel = want
		}
		required := Options{Roles: opt.Roles}.wanted(f)
		if err := v.file(want.Name, required, func() (File, error) { return want, nil }); err != nil {
			return nil, err
		}
	}
	// vmlinux is derived at install from the kernel, and QEMU boots it when present: it
	// is checked against what the verified kernel extracts to.
	if err := v.file(VMLinuxName, false, func() (File, error) { return v.derivedVMLinux(kernel) }); err != nil {
		return nil, err
	}
	if !v.now.equal(v.old) {
		// A record that cannot be written costs a full check next time, nothing more.
		_ = writeRecord(dir, v.now)
	}
	return &Verified{Manifest: man, Hashed: v.hashed}, nil
}

// installed is the File as the cache holds it: its unpacked form where it has one.
func (f File) installed() File {
	if u := f.Unpack; u != nil {
		return u.asFile()
	}
	return f
}

type verifier struct {
	ctx      context.Context
	dir      string
	source   string
	old, now record
	hashed   []string
}

func (v *verifier) changed(name, why string) error {
	return &ChangedError{Dir: v.dir, File: name, Why: why, Source: v.source}
}

// file checks one file of the image; want is asked for only when the file must be read.
func (v *verifier) file(name string, required bool, want func() (File, error)) error {
	p := filepath.Join(v.dir, name)
	lst, err := os.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		if required {
			return v.changed(name, "is missing")
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("verify image: %w", err)
	}
	if !lst.Mode().IsRegular() {
		return v.changed(name, "is not a regular file")
	}
	fh, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("verify image: %w", err)
	}
	defer fh.Close()
	start := time.Now()
	fp, ok := fingerprintOf(fh)
	if old, seen := v.old.Files[name]; ok && seen && old == fp {
		v.now.Files[name] = fp
		return nil
	}
	w, err := want()
	if err != nil {
		return err
	}
	v.hashed = append(v.hashed, name)
	n, sum, err := sha256Of(ctxReader{v.ctx, fh})
	if err != nil {
		return fmt.Errorf("verify image file %s: %w", name, err)
	}
	if n != w.Size || sum != w.SHA256 {
		return v.changed(name, "does not match its digest")
	}
	// Only a fingerprint that held still while the file was read, and that a later
	// write in the same timestamp tick could not repeat, is worth recording.
	if after, ok2 := fingerprintOf(fh); ok && ok2 && after == fp && !fp.racy(start) {
		v.now.Files[name] = fp
	}
	return nil
}

// derivedVMLinux reads the kernel, checks it, and says what vmlinux must be.
func (v *verifier) derivedVMLinux(kernel File) (File, error) {
	bz, err := os.ReadFile(filepath.Join(v.dir, kernel.Name))
	if err != nil {
		return File{}, fmt.Errorf("verify image: %w", err)
	}
	if sum := sha256.Sum256(bz); int64(len(bz)) != kernel.Size || hex.EncodeToString(sum[:]) != kernel.SHA256 {
		return File{}, v.changed(kernel.Name, "does not match its digest")
	}
	elf, err := ExtractVMLinux(bz)
	if err != nil {
		return File{}, v.changed(VMLinuxName, "is not the image's kernel uncompressed")
	}
	sum := sha256.Sum256(elf)
	return File{Name: VMLinuxName, Size: int64(len(elf)), SHA256: hex.EncodeToString(sum[:])}, nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// fingerprint is what changes when a file's bytes can have: a write moves mtime and
// ctime (ctime cannot be set back by a user), a replacement changes the file id.
type fingerprint struct {
	Size  int64  `json:"size"`
	Mtime int64  `json:"mtime"` // ns since the epoch
	Ctime int64  `json:"ctime"` // ns; on Windows the change time
	Dev   uint64 `json:"dev"`   // on Windows the volume serial number
	Ino   uint64 `json:"ino"`   // on Windows the file index
}

// racy says whether a write at or after start could leave the file's times unchanged:
// they lie within one timestamp tick of it (2 s on file systems with whole seconds).
func (fp fingerprint) racy(start time.Time) bool {
	tick := int64(50 * time.Millisecond)
	if fp.Mtime%int64(time.Second) == 0 && fp.Ctime%int64(time.Second) == 0 {
		tick = int64(2 * time.Second)
	}
	return max(fp.Mtime, fp.Ctime) > start.UnixNano()-tick
}

// record holds the fingerprints of the files of one installed image, as of the last full
// check. It lives beside the image in the cache, which no share exposes to a VM; it is
// mode 0600 and, where the OS tells, trusted only if this user owns it and nobody else
// can write it.
type record struct {
	Manifest string                 `json:"manifest"` // the manifest digest the files were checked against
	Files    map[string]fingerprint `json:"files"`
}

func (r record) equal(o record) bool {
	if r.Manifest != o.Manifest || len(r.Files) != len(o.Files) {
		return false
	}
	for k, v := range r.Files {
		if ov, ok := o.Files[k]; !ok || ov != v {
			return false
		}
	}
	return true
}

func recordPath(dir string) string { return filepath.Clean(dir) + ".verified.json" }

// readRecord returns the record of dir for digest; a missing, foreign or unreadable one
// is empty, which means a full check.
func readRecord(dir, digest string) record {
	empty := record{Files: map[string]fingerprint{}}
	p := recordPath(dir)
	st, err := os.Lstat(p)
	if err != nil || !st.Mode().IsRegular() || !recordTrusted(st) {
		return empty
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return empty
	}
	var r record
	if json.Unmarshal(b, &r) != nil || r.Manifest != digest || r.Files == nil {
		return empty
	}
	return r
}

func writeRecord(dir string, r record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return atomicfile.Write(recordPath(dir), b, 0o600)
}

// noteInstalled records the fingerprints of files an install has just verified in dir, so
// the first boot does not read them again. With merge, the record's other files are kept.
func noteInstalled(dir, digest string, names []string, merge bool) {
	r := record{Manifest: digest, Files: map[string]fingerprint{}}
	if merge {
		r = readRecord(dir, digest)
		r.Manifest = digest
	}
	start := time.Now()
	for _, name := range names {
		fh, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		if fp, ok := fingerprintOf(fh); ok && !fp.racy(start) {
			r.Files[name] = fp
		}
		fh.Close()
	}
	_ = writeRecord(dir, r) // a missing record costs a full check at boot, nothing more
}
