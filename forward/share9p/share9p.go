// Package share9p serves a host folder over 9P2000.L on any stream: the Go file server
// the guest mounts with trans=fd over the host<->guest transport. Hyper-V has no virtio-9p
// or virtiofs, so this is how its guests see host folders; here it runs on QEMU too.
package share9p

import (
	"context"
	"net"
	"os"
	"path/filepath"

	"github.com/hugelgupf/p9/fsimpl/localfs"
	"github.com/hugelgupf/p9/linux"
	"github.com/hugelgupf/p9/p9"
)

// Options describe one share.
type Options struct {
	Root     string
	ReadOnly bool
}

// Serve answers 9P requests on conn until the guest unmounts or ctx ends.
func Serve(ctx context.Context, conn net.Conn, opt Options) error {
	root, err := filepath.Abs(opt.Root)
	if err != nil {
		return err
	}
	if st, err := os.Stat(root); err != nil || !st.IsDir() {
		conn.Close()
		return &os.PathError{Op: "share", Path: root, Err: os.ErrNotExist}
	}
	var at p9.Attacher = listingAttacher{localfs.Attacher(root)}
	if opt.ReadOnly {
		at = roAttacher{at}
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	return p9.NewServer(at).Handle(conn, conn)
}

type listingAttacher struct{ p9.Attacher }

func (a listingAttacher) Attach() (p9.File, error) {
	f, err := a.Attacher.Attach()
	return wrapListing(f), err
}

type roAttacher struct{ p9.Attacher }

func (a roAttacher) Attach() (p9.File, error) {
	f, err := a.Attacher.Attach()
	if err != nil {
		return nil, err
	}
	return roFile{f}, nil
}

// roFile refuses every change, so a :ro share is read-only at the server and not just by
// the guest's mount flags, which a root process in the guest could undo.
type roFile struct{ p9.File }

func wrap(f p9.File) p9.File {
	if f == nil {
		return nil
	}
	return roFile{f}
}

func (f roFile) Walk(names []string) ([]p9.QID, p9.File, error) {
	q, nf, err := f.File.Walk(names)
	return q, wrap(nf), err
}

func (f roFile) WalkGetAttr(names []string) ([]p9.QID, p9.File, p9.AttrMask, p9.Attr, error) {
	q, nf, m, a, err := f.File.WalkGetAttr(names)
	return q, wrap(nf), m, a, err
}

func (f roFile) Open(mode p9.OpenFlags) (p9.QID, uint32, error) {
	if mode.Mode() != p9.ReadOnly {
		return p9.QID{}, 0, linux.EROFS
	}
	return f.File.Open(mode)
}

func (f roFile) SetAttr(p9.SetAttrMask, p9.SetAttr) error     { return linux.EROFS }
func (f roFile) WriteAt([]byte, int64) (int, error)           { return 0, linux.EROFS }
func (f roFile) SetXattr(string, []byte, p9.XattrFlags) error { return linux.EROFS }
func (f roFile) RemoveXattr(string) error                     { return linux.EROFS }
func (f roFile) Create(string, p9.OpenFlags, p9.FileMode, p9.UID, p9.GID) (p9.File, p9.QID, uint32, error) {
	return nil, p9.QID{}, 0, linux.EROFS
}
func (f roFile) Mkdir(string, p9.FileMode, p9.UID, p9.GID) (p9.QID, error) {
	return p9.QID{}, linux.EROFS
}
func (f roFile) Symlink(string, string, p9.UID, p9.GID) (p9.QID, error) {
	return p9.QID{}, linux.EROFS
}
func (f roFile) Link(p9.File, string) error { return linux.EROFS }
func (f roFile) Mknod(string, p9.FileMode, uint32, uint32, p9.UID, p9.GID) (p9.QID, error) {
	return p9.QID{}, linux.EROFS
}
func (f roFile) Rename(p9.File, string) error           { return linux.EROFS }
func (f roFile) RenameAt(string, p9.File, string) error { return linux.EROFS }
func (f roFile) UnlinkAt(string, uint32) error          { return linux.EROFS }
