// Package images describes, fetches, verifies and caches guest images. An image is a
// manifest (addressed by its own sha256) listing each file with its size and sha256.
// Installs are all-or-nothing: files land in a partial directory of the install's own,
// every digest is checked, and only then is the directory renamed into the cache. Verify
// checks an installed image again before each cold boot.
package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/skiff-dev/skiff/machine/atomicfile"
)

// DefaultRef is the image `skiff machine init` uses without --image. Release builds set it
// (with -ldflags -X) to the published, digest-pinned manifest URL.
var DefaultRef = ""

// File is one file of an image.
type File struct {
	Role   string `json:"role"` // kernel, initrd, root
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Unpack, when set, says the file is compressed for the download only and names what
	// it unpacks to at install. The VM reads the unpacked file: a guest decompressing its
	// own root under emulation spends seconds of every boot on it.
	Unpack *Unpacked `json:"unpack,omitempty"`
	// Path, when set, is the file's name beside the manifest where it is published, if not
	// Name: a release served from one flat folder (a GitHub release) gives each image's
	// files their architecture in the name.
	Path string `json:"path,omitempty"`
}

// published is the file's name beside the manifest.
func (f File) published() string {
	if f.Path != "" {
		return f.Path
	}
	return f.Name
}

// Unpacked is what a compressed File becomes in the cache.
type Unpacked struct {
	Format string `json:"format"` // zstd
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// InstalledName is the file's name in an installed image.
func (f File) InstalledName() string {
	if f.Unpack != nil {
		return f.Unpack.Name
	}
	return f.Name
}

// RolePaths maps each role of an installed image in dir to its file.
func (m *Manifest) RolePaths(dir string) map[string]string {
	out := map[string]string{}
	for _, f := range m.Files {
		out[f.Role] = filepath.Join(dir, f.InstalledName())
	}
	return out
}

// Manifest describes an image.
type Manifest struct {
	SchemaVersion int    `json:"schemaVersion"`
	Name          string `json:"name"`
	Version       string `json:"version"`
	Arch          string `json:"arch"`
	Variant       string `json:"variant"`
	KernelVersion string `json:"kernelVersion"`
	KernelCmdline string `json:"kernelCmdline"`
	Files         []File `json:"files"`
}

// BootCmdline is the kernel command line a VM booting this image is given: what the
// image's kernel needs, and what the host side relies on (panic=-1: a panic ends the VM,
// which the host agent then boots again, rather than rebooting it unseen).
func (m *Manifest) BootCmdline() string {
	cmdline := m.KernelCmdline
	if cmdline == "" { // images from before the manifest carried it
		cmdline = "console=ttyS0 quiet"
		if m.Arch == "arm64" {
			cmdline = "console=ttyAMA0 quiet"
		}
	}
	cmdline += " panic=-1"
	if m.Arch != "arm64" {
		cmdline += " rootwait"
	}
	return cmdline
}

// ParseManifest decodes and sanity-checks a manifest.
func ParseManifest(b []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("image manifest is not valid JSON: %w", err)
	}
	if m.SchemaVersion != 1 {
		return nil, fmt.Errorf("image manifest schema version %d is not supported", m.SchemaVersion)
	}
	roles := map[string]bool{}
	names := map[string]bool{"manifest.json": true}
	claim := func(name string) error {
		if names[name] {
			return fmt.Errorf("image manifest: two files are named %s", name)
		}
		names[name] = true
		return nil
	}
	for _, f := range m.Files {
		if err := checkEntry(f.Name, f.SHA256); err != nil {
			return nil, err
		}
		if err := claim(f.Name); err != nil {
			return nil, err
		}
		if f.Path != "" {
			if err := checkEntry(f.Path, f.SHA256); err != nil {
				return nil, err
			}
		}
		if u := f.Unpack; u != nil {
			if u.Format != "zstd" {
				return nil, fmt.Errorf("image manifest: file %s is packed as %q, which this Skiff cannot unpack (it knows zstd)", f.Name, u.Format)
			}
			if err := checkEntry(u.Name, u.SHA256); err != nil {
				return nil, err
			}
			if err := claim(u.Name); err != nil {
				return nil, err
			}
		}
		roles[f.Role] = true
	}
	for _, r := range []string{RoleKernel, RoleInitrd, RoleRoot} {
		if !roles[r] {
			return nil, fmt.Errorf("image manifest lists no %s file", r)
		}
	}
	return &m, nil
}

func checkEntry(name, sum string) error {
	if name == "" || name != path.Base(name) || name == "." || name == ".." || strings.ContainsAny(name, `/\`) {
		return fmt.Errorf("image manifest names an unsafe file %q", name)
	}
	if len(sum) != 64 {
		return fmt.Errorf("image manifest: file %s has no valid sha256", name)
	}
	return nil
}

// Installed is an image verified and present in the cache.
type Installed struct {
	Dir      string
	Digest   string // sha256:<hex> of the manifest
	Manifest *Manifest
	CacheHit bool
	// Unpinned: the manifest came over https without @sha256:DIGEST, so its digest is
	// whatever the server sent. The caller should warn and show Digest to pin it.
	Unpinned bool
}

// Options tune an install.
type Options struct {
	// Progress receives human progress output; nil is silent.
	Progress io.Writer
	// Client is used for http(s) sources.
	Client *http.Client
	// Roles are the image's optional files to install besides its kernel, initrd and root
	// (RoleEFIBoot, RoleWSLRootfs, RoleKube, EngineRole): only the backend that boots from one needs it, and the
	// WSL root alone is as big as the rest. Installing an image again adds those missing.
	Roles []string
	// Arch is the architecture an image index is resolved for; empty is this host's.
	Arch string
}

// Manifest roles.
const (
	RoleKernel    = "kernel"
	RoleInitrd    = "initrd"
	RoleRoot      = "root"
	RoleEFIBoot   = "efi-boot"   // the Hyper-V boot disk (vmm.EFIBootDisk)
	RoleWSLRootfs = "wsl-rootfs" // WSL's root filesystem tarball
	RoleKube      = "kube"       // the Kubernetes layer, for machines that run Kubernetes
)

// roleEnginePrefix starts the role of an engine's layer: the files only that engine
// needs, which the guest stacks over a root that has none (images/rootfs.sh split_engines).
const roleEnginePrefix = "engine-"

// EngineRole is the manifest role of engine's layer ("engine-docker").
func EngineRole(engine string) string { return roleEnginePrefix + engine }

// EngineLayers says whether the image's root leaves the engines to layers, so that a
// machine boots only with its engine's layer. Images from before the split carry every
// engine in the root and no layer.
func (m *Manifest) EngineLayers() bool {
	return slices.ContainsFunc(m.Files, func(f File) bool { return strings.HasPrefix(f.Role, roleEnginePrefix) })
}

// wanted says whether an install with opt takes f.
func (opt Options) wanted(f File) bool {
	switch f.Role {
	case RoleKernel, RoleInitrd, RoleRoot:
		return true
	}
	return slices.Contains(opt.Roles, f.Role)
}

// DigestMismatchError names the file and both digests.
type DigestMismatchError struct {
	File, Expected, Actual string
}

func (e *DigestMismatchError) Error() string {
	return fmt.Sprintf("image file %s is corrupt: expected sha256:%s, got sha256:%s", e.File, e.Expected, e.Actual)
}

// source is where an image's files come from.
type source struct {
	base   string // directory path or URL prefix
	remote bool
}

// location is where name (a manifest's file, or an index's manifest: slash-separated,
// relative) is beside the source.
func (s source) location(name string) string {
	if s.remote {
		u, _ := url.Parse(s.base)
		u.Path = path.Join(path.Dir(u.Path), name)
		return u.String()
	}
	return filepath.Join(s.base, filepath.FromSlash(name))
}

// ErrUnpinnedHTTP refuses an image over plain http without a pinned digest: anyone on
// the path could swap the manifest and with it every digest it lists.
var ErrUnpinnedHTTP = errors.New("plain http without @sha256:DIGEST can be altered in transit")

// parseRef splits REF[@sha256:HEX].
func parseRef(ref string) (loc, pinned string, err error) {
	if i := strings.LastIndex(ref, "@sha256:"); i >= 0 {
		loc, pinned = ref[:i], ref[i+len("@sha256:"):]
		if len(pinned) != 64 {
			return "", "", fmt.Errorf("image reference %q: the pinned digest must be 64 hex digits", ref)
		}
		return loc, strings.ToLower(pinned), nil
	}
	return ref, "", nil
}

// Install makes the image at ref available in cacheDir and returns where. ref is a
// directory holding manifest.json (or a release's index.json), a manifest or index path,
// or an http(s) URL of one, optionally pinned with @sha256:HEX (required over plain
// http). An index resolves to the manifest for opt.Arch, pinned by the index.
//
// Installs of one image wait for each other; each downloads into a folder of its own
// that is renamed into the cache, synced, only when every digest checked out. A cached
// image is verified (cheaply, see Verify) and, if it was changed, installed again beside
// the changed copy, which is kept.
func Install(ctx context.Context, ref, cacheDir string, opt Options) (*Installed, error) {
	if ref == "" {
		return nil, errors.New("no guest image: pass --image PATH|URL (build one with `make image`)")
	}
	if opt.Client == nil {
		opt.Client = http.DefaultClient
	}
	loc, pinned, err := parseRef(ref)
	if err != nil {
		return nil, err
	}
	src := source{base: loc}
	var raw []byte
	unpinned := false
	imagesDir := filepath.Join(cacheDir, "images")
	if u, err := url.Parse(loc); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		if u.Scheme == "http" && pinned == "" {
			return nil, fmt.Errorf("refusing image %s: %w: add @sha256:DIGEST or use https", loc, ErrUnpinnedHTTP)
		}
		src.remote = true
		client := opt.Client
		if pinned == "" {
			unpinned = true
			client = httpsOnly(client)
		}
		// A pinned manifest or index already in the cache is those bytes: no network.
		if raw = cachedPinned(imagesDir, pinned); raw == nil {
			raw, err = fetchSmall(ctx, client, loc)
			if err != nil {
				return nil, err
			}
		}
	} else {
		p := loc
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			p = filepath.Join(p, "manifest.json")
			if _, err := os.Stat(p); err != nil {
				p = filepath.Join(loc, IndexName) // a release's folder
			}
		}
		raw, err = os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("guest image: %w", err)
		}
		src.base = filepath.Dir(p)
	}
	sum := sha256.Sum256(raw)
	digest := hex.EncodeToString(sum[:])
	if pinned != "" && pinned != digest {
		return nil, &DigestMismatchError{File: "manifest.json", Expected: pinned, Actual: digest}
	}
	if isIndex(raw) {
		return installFromIndex(ctx, raw, digest, src, unpinned, cacheDir, opt)
	}
	man, err := ParseManifest(raw)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(imagesDir, 0o755); err != nil {
		return nil, fmt.Errorf("install image: %w", err)
	}
	unlock, locked, err := lockImage(ctx, imagesDir, digest, opt.Progress)
	if err != nil {
		return nil, err
	}
	defer unlock()
	in := &installer{opt: opt, src: src, man: man, raw: raw, imagesDir: imagesDir, digest: digest, locked: locked,
		inst: &Installed{Dir: filepath.Join(imagesDir, "sha256-"+digest), Digest: "sha256:" + digest, Manifest: man, Unpinned: unpinned}}
	if _, err := os.Stat(filepath.Join(in.inst.Dir, "manifest.json")); err == nil {
		return in.cached(ctx, ref)
	}
	return in.inst, in.fresh(ctx, nil)
}

// httpsOnly is c refusing redirects off https: an unpinned manifest is only as good as
// the channel it came over.
func httpsOnly(c *http.Client) *http.Client {
	cc := *c
	next := c.CheckRedirect
	cc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme != "https" {
			return fmt.Errorf("refusing redirect to %s: an image without @sha256:DIGEST is fetched over https only", req.URL)
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return &cc
}

// installer is one install of one image, holding its lock where the OS has locks.
type installer struct {
	opt       Options
	src       source
	man       *Manifest
	raw       []byte
	imagesDir string
	digest    string
	locked    bool
	inst      *Installed
}

// cached finishes an install the cache already holds: it verifies the image and adds the
// optional files the install wants that an earlier one left out.
func (in *installer) cached(ctx context.Context, ref string) (*Installed, error) {
	final := in.inst.Dir
	in.inst.CacheHit = true
	_, err := Verify(ctx, final, VerifyOptions{Digest: in.inst.Digest, Source: ref})
	if ce := (*ChangedError)(nil); errors.As(err, &ce) {
		// Install it again; machines find the image by its folder, which gets the good copy.
		if in.opt.Progress != nil {
			fmt.Fprintf(in.opt.Progress, "image file %s in %s %s; installing the image again\n", ce.File, ce.Dir, ce.Why)
		}
		in.inst.CacheHit = false
		return in.inst, in.fresh(ctx, in.presentRoles(final))
	}
	if err != nil {
		return nil, err
	}
	var missing []File
	for _, f := range in.man.Files {
		if _, err := os.Stat(filepath.Join(final, f.InstalledName())); err != nil && in.opt.wanted(f) {
			missing = append(missing, f)
		}
	}
	if len(missing) == 0 {
		return in.inst, nil
	}
	partial, err := in.partialDir()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, f := range missing {
		if err := fetchFile(ctx, in.opt, in.src, f, partial); err != nil {
			return nil, err
		}
		names = append(names, f.InstalledName())
	}
	if err := atomicfile.SyncFiles(partial); err != nil {
		return nil, fmt.Errorf("install image: %w", err)
	}
	for _, name := range names {
		if err := os.Rename(filepath.Join(partial, name), filepath.Join(final, name)); err != nil {
			return nil, fmt.Errorf("install image: %w", err)
		}
	}
	if err := atomicfile.SyncDir(final); err != nil {
		return nil, fmt.Errorf("install image: %w", err)
	}
	os.Remove(partial) // empty now; after a failure it stays, to be resumed from
	noteInstalled(final, in.inst.Digest, names, true)
	return in.inst, nil
}

// presentRoles are the optional roles whose files an installed image in dir holds.
func (in *installer) presentRoles(dir string) []string {
	var roles []string
	for _, f := range in.man.Files {
		if _, err := os.Lstat(filepath.Join(dir, f.InstalledName())); err == nil && !in.opt.wanted(f) {
			roles = append(roles, f.Role)
		}
	}
	return roles
}

// fresh installs the image into a folder of its own and renames that into the cache;
// a changed copy already there is moved aside, not deleted. extra are optional roles to
// install besides the wanted ones.
func (in *installer) fresh(ctx context.Context, extra []string) error {
	partial, err := in.partialDir()
	if err != nil {
		return err
	}
	opt := in.opt
	opt.Roles = append(slices.Clip(opt.Roles), extra...)
	var names []string
	for _, f := range in.man.Files {
		if !opt.wanted(f) {
			continue
		}
		if err := fetchFile(ctx, opt, in.src, f, partial); err != nil {
			return err // the partial folder stays, to be resumed from
		}
		names = append(names, f.InstalledName())
	}
	deriveVMLinux(partial, in.man)
	if _, err := os.Stat(filepath.Join(partial, VMLinuxName)); err == nil {
		names = append(names, VMLinuxName)
	}
	if err := os.WriteFile(filepath.Join(partial, "manifest.json"), in.raw, 0o644); err != nil {
		return fmt.Errorf("install image: %w", err)
	}
	// Every byte is on disk before the folder gets its final name, so a crash cannot
	// leave a half-written image under it.
	if err := atomicfile.SyncFiles(partial); err != nil {
		return fmt.Errorf("install image: %w", err)
	}
	final := in.inst.Dir
	if _, err := os.Stat(final); err == nil {
		aside := filepath.Join(in.imagesDir, fmt.Sprintf(".changed-sha256-%s-%d", in.digest, time.Now().UnixNano()))
		if err := os.Rename(final, aside); err != nil {
			return fmt.Errorf("install image: move the changed copy aside: %w", err)
		}
		if in.opt.Progress != nil {
			fmt.Fprintf(in.opt.Progress, "the changed copy is kept in %s\n", aside)
		}
	}
	if err := publish(partial, final); err != nil {
		return err
	}
	noteInstalled(final, in.inst.Digest, names, false)
	return nil
}

// publish renames a complete, synced partial folder to its final name and syncs the
// cache folder. Where another install got there first (no lock on this OS or file
// system), its image is the same by digest and ours is dropped.
func publish(partial, final string) error {
	if err := os.Rename(partial, final); err != nil {
		if _, serr := os.Stat(filepath.Join(final, "manifest.json")); serr != nil {
			return fmt.Errorf("install image: %w", err)
		}
		os.RemoveAll(partial)
	}
	if err := atomicfile.SyncDir(filepath.Dir(final)); err != nil {
		return fmt.Errorf("install image: %w", err)
	}
	return nil
}

// partialDir makes this install's download folder. Under the image's lock, a folder an
// interrupted install left is taken over, so its downloads resume.
func (in *installer) partialDir() (string, error) {
	prefix := ".partial-" + in.digest + "-"
	if in.locked {
		if left, _ := filepath.Glob(filepath.Join(in.imagesDir, prefix+"*")); len(left) > 0 {
			return left[0], nil
		}
	}
	dir, err := os.MkdirTemp(in.imagesDir, prefix)
	if err != nil {
		return "", fmt.Errorf("install image: %w", err)
	}
	return dir, nil
}

// lockImage takes the install lock of one image, waiting while another install holds it.
// Where the file system has no locks, installs go on unlocked (locked false): their
// folders are their own and the final rename is atomic.
func lockImage(ctx context.Context, imagesDir, digest string, progress io.Writer) (unlock func(), locked bool, err error) {
	f, err := os.OpenFile(filepath.Join(imagesDir, ".lock-"+digest), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return func() {}, false, nil
	}
	for said := false; ; said = true {
		busy, err := tryLock(f)
		if err != nil || !busy {
			// Closing the file releases the lock; the file stays, as removing it would
			// let a waiter lock a file no longer there.
			return func() { f.Close() }, err == nil, nil
		}
		if !said && progress != nil {
			fmt.Fprintln(progress, "waiting for another install of this image to finish")
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, false, fmt.Errorf("install image: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func fetchSmall(ctx context.Context, c *http.Client, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(u, resp)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}

// fetchFile brings one file into dir and verifies it. A verified file already there is
// kept (an install interrupted after it); a partial download is resumed.
func fetchFile(ctx context.Context, opt Options, src source, f File, dir string) error {
	if u := f.Unpack; u != nil && keepVerified(filepath.Join(dir, u.Name), u.asFile()) {
		return nil
	}
	dst := filepath.Join(dir, f.Name)
	if !keepVerified(dst, f) {
		if err := fetchVerified(ctx, opt, src, f, dst); err != nil {
			return err
		}
	}
	if f.Unpack != nil {
		return unpack(dst, f, dir, opt.Progress)
	}
	return nil
}

func (u *Unpacked) asFile() File { return File{Name: u.Name, Size: u.Size, SHA256: u.SHA256} }

// keepVerified reports whether p already holds f (an install interrupted after it). A
// complete but wrong file is removed; a shorter one stays to be resumed.
func keepVerified(p string, f File) bool {
	st, err := os.Stat(p)
	if err != nil || st.Size() != f.Size {
		return false
	}
	if verify(p, f) == nil {
		return true
	}
	os.Remove(p)
	return false
}

func fetchVerified(ctx context.Context, opt Options, src source, f File, dst string) error {
	var err error
	loc := src.location(f.published())
	if src.remote {
		err = download(ctx, opt, loc, dst, f)
	} else {
		err = copyLocal(loc, dst)
	}
	if err != nil {
		return err
	}
	if err := verify(dst, f); err != nil {
		os.Remove(dst)                        // a bad file must not be resumed from
		return fmt.Errorf("%s: %w", loc, err) // where the bad copy came from
	}
	return nil
}

func verify(p string, f File) error {
	fh, err := os.Open(p)
	if err != nil {
		return err
	}
	defer fh.Close()
	n, got, err := sha256Of(fh)
	if err != nil {
		return fmt.Errorf("read %s: %w", f.Name, err)
	}
	if n != f.Size && got != f.SHA256 {
		return fmt.Errorf("image file %s is truncated or wrong: expected %d bytes with sha256:%s, got %d bytes with sha256:%s", f.Name, f.Size, f.SHA256, n, got)
	}
	if got != f.SHA256 {
		return &DigestMismatchError{File: f.Name, Expected: f.SHA256, Actual: got}
	}
	return nil
}

// sha256Of reads r to its end and returns how much it read and its sha256 in hex.
func sha256Of(r io.Reader) (int64, string, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return n, hex.EncodeToString(h.Sum(nil)), err
}

// unpack decompresses the verified file at p into dir under its unpacked name, checks
// what came out, and then drops the compressed copy.
func unpack(p string, f File, dir string, progress io.Writer) error {
	u := f.Unpack
	in, err := os.Open(p)
	if err != nil {
		return err
	}
	defer in.Close()
	if progress != nil {
		fmt.Fprintf(progress, "unpacking %s (%.1f MB)\n", u.Name, float64(u.Size)/1e6)
	}
	// The build compresses with a long window (--long=27) for a smaller download.
	dec, err := zstd.NewReader(in, zstd.WithDecoderMaxWindow(1<<30), zstd.WithDecoderConcurrency(1))
	if err != nil {
		return err
	}
	defer dec.Close()
	tmp := filepath.Join(dir, "."+u.Name+".unpack")
	out, err := os.Create(tmp)
	if err != nil {
		return err
	}
	h := sha256.New()
	// One byte past the size shows an unpacked file that is too long without reading on.
	n, err := io.Copy(io.MultiWriter(out, h), io.LimitReader(dec, u.Size+1))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("unpack image file %s: %w", f.Name, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != u.Size || got != u.SHA256 {
		os.Remove(tmp)
		os.Remove(p) // the packed file passed its own digest: the image itself is wrong
		if n != u.Size {
			return fmt.Errorf("image file %s unpacks to %d bytes, expected %d (sha256:%s)", f.Name, n, u.Size, u.SHA256)
		}
		return &DigestMismatchError{File: u.Name, Expected: u.SHA256, Actual: got}
	}
	if err := os.Rename(tmp, filepath.Join(dir, u.Name)); err != nil {
		return err
	}
	return os.Remove(p)
}

func copyLocal(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return fmt.Errorf("guest image: %w", err)
	}
	defer in.Close()
	// A copy, never a hard link: the source may be rebuilt in place later, and the cache
	// must keep the bytes its digests describe.
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", from, err)
	}
	return out.Close()
}

// download fetches u into dst, resuming from dst's current size with a Range request.
func download(ctx context.Context, opt Options, u, dst string, f File) error {
	for attempt := 0; ; attempt++ {
		err := downloadOnce(ctx, opt, u, dst, f)
		if err == nil || ctx.Err() != nil {
			return err
		}
		if attempt >= 5 {
			if st, serr := os.Stat(dst); serr == nil && st.Size() > 0 {
				return fmt.Errorf("%w (%d of %d bytes of %s are kept: run the command again to resume)", err, st.Size(), f.Size, f.Name)
			}
			return err
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			return perm.err
		}
		if opt.Progress != nil {
			fmt.Fprintf(opt.Progress, "\n%s: %v; resuming\n", f.Name, err)
		}
		time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
	}
}

type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }

func downloadOnce(ctx context.Context, opt Options, u, dst string, f File) error {
	var have int64
	if st, err := os.Stat(dst); err == nil {
		have = st.Size()
	}
	if have > f.Size {
		os.Remove(dst)
		have = 0
	}
	if have == f.Size {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return &permanentError{err}
	}
	if have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
	}
	resp, err := opt.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	flags := os.O_CREATE | os.O_WRONLY
	switch {
	case resp.StatusCode == http.StatusPartialContent && have > 0:
		flags |= os.O_APPEND
	case resp.StatusCode == http.StatusOK:
		flags |= os.O_TRUNC // the server ignored Range: start over
		have = 0
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return &permanentError{statusError(u, resp)}
	default:
		return fmt.Errorf("download %s: %s", u, resp.Status)
	}
	out, err := os.OpenFile(dst, flags, 0o644)
	if err != nil {
		return &permanentError{err}
	}
	defer out.Close()
	pw := &progress{w: opt.Progress, name: f.Name, total: f.Size, done: have, start: time.Now(), base: have}
	_, err = io.Copy(out, io.TeeReader(io.LimitReader(resp.Body, f.Size-have), pw))
	pw.finish()
	if err != nil {
		return err
	}
	st, err := out.Stat()
	if err != nil {
		return err
	}
	if st.Size() < f.Size {
		return fmt.Errorf("connection closed at %d of %d bytes", st.Size(), f.Size)
	}
	return nil
}

// progress draws a one-line bar.
type progress struct {
	w                 io.Writer
	name              string
	total, done, base int64
	start, last       time.Time
}

func (p *progress) Write(b []byte) (int, error) {
	p.done += int64(len(b))
	if p.w != nil && time.Since(p.last) > 200*time.Millisecond {
		p.last = time.Now()
		p.draw()
	}
	return len(b), nil
}

func (p *progress) draw() {
	pct := float64(p.done) * 100 / float64(max(p.total, 1))
	bar := strings.Repeat("#", int(pct/5)) + strings.Repeat(".", 20-int(pct/5))
	rate := float64(p.done-p.base) / max(time.Since(p.start).Seconds(), 0.001) / 1e6
	fmt.Fprintf(p.w, "\r%-16s [%s] %5.1f%% %7.1f/%.1f MB %6.1f MB/s", p.name, bar, pct, float64(p.done)/1e6, float64(p.total)/1e6, rate)
}

func (p *progress) finish() {
	if p.w != nil {
		p.draw()
		fmt.Fprintln(p.w)
	}
}
