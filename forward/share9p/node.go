package share9p

import (
	"errors"
	"hash/fnv"
	"io"
	"os"
	"path"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/hugelgupf/p9/linux"
	"github.com/hugelgupf/p9/p9"
)

// The guest's errors for refusals.
var (
	errReadOnly = linux.EROFS
	errDenied   = linux.EACCES
	// errMoved says a name no longer holds what the guest walked to (another file, or a
	// symlink, was put in its place); the guest's kernel looks it up again.
	errMoved = linux.ESTALE
)

// Linux's values of the 9P2000.L open flag O_TRUNC and unlinkat's AT_REMOVEDIR, whatever
// the host's are.
const (
	dotlTrunc   p9.OpenFlags = 0o1000
	atRemoveDir uint32       = 0x200
)

// node is what one guest fid refers to. A folder reaches its children through its own
// handle, opened on first use from its parent's handle and checked to be the folder the
// guest walked to; a file is reached by its name in its parent's handle and checked the
// same way. The p9 server keeps a fid's parent alive as long as the fid, and tells the
// node when a rename moves it (Renamed).
type node struct {
	s *share

	mu       sync.Mutex
	parent   *node       // nil for the root
	name     string      // name in parent
	info     os.FileInfo // what the walk found: identity that later opens must match (adoptName)
	dir      *os.Root    // a folder's handle (the share's root handle for the root)
	file     *os.File    // after Open or Create
	writable bool        // file was opened for writing

	listMu  sync.Mutex // the Readdir snapshot
	listed  bool
	entries p9.Dirents
}

var _ p9.File = (*node)(nil)

func (n *node) isRoot() bool { return n.parent == nil }

// loc returns where the node is now.
func (n *node) loc() (*node, string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.parent, n.name
}

// handle returns a folder node's handle, opening and checking it on first use.
func (n *node) handle() (*os.Root, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.dir != nil {
		return n.dir, nil
	}
	if !n.info.IsDir() {
		return nil, linux.ENOTDIR
	}
	ph, err := n.parent.handle()
	if err != nil {
		return nil, err
	}
	// Checked before the open too, so that a name swapped for a FIFO is not opened.
	if _, err := n.sameName(ph, n.name); err != nil {
		return nil, err
	}
	d, err := ph.OpenRoot(n.name)
	if err != nil {
		return nil, errno(err)
	}
	fi, err := d.Lstat(".")
	if err != nil || !same(fi, n.info) {
		d.Close()
		return nil, errMoved
	}
	n.dir = d
	return d, nil
}

// parentHandle returns the handle of the folder the node is in, and its name there.
func (n *node) parentHandle() (*os.Root, string, error) {
	p, name := n.loc()
	if p == nil {
		return nil, "", linux.EINVAL
	}
	ph, err := p.handle()
	return ph, name, err
}

// rel is the node's path below the root, for the platforms that name files by path and
// for messages.
func (n *node) rel() string {
	p, name := n.loc()
	if p == nil {
		return "."
	}
	return path.Join(p.rel(), name)
}

// checkName refuses names that are not a single component: the p9 server checks this
// too, but a name is the one thing that reaches the host as it is.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") ||
		runtime.GOOS == "windows" && strings.ContainsAny(name, `\:`) {
		return linux.EINVAL
	}
	return nil
}

// access is the host's open flag for a 9P access mode; the other 9P flags are Linux's
// numbers, which the host's may not be, and are handled by the node.
func access(mode p9.OpenFlags) (int, error) {
	switch mode.Mode() {
	case p9.ReadOnly:
		return os.O_RDONLY, nil
	case p9.WriteOnly:
		return os.O_WRONLY, nil
	case p9.ReadWrite:
		return os.O_RDWR, nil
	}
	return 0, linux.EINVAL
}

// mode is what a guest's create asks for, as the host makes it.
func (s *share) mode(perm p9.FileMode) os.FileMode {
	return os.FileMode(perm.Permissions()) & 0o777 &^ s.umask
}

// qid identifies fi to the guest: its inode number where the host has one.
func (n *node) qid(fi os.FileInfo, child string) p9.QID {
	id, ok := fileID(fi)
	if !ok {
		h := fnv.New64a()
		h.Write([]byte(path.Join(n.rel(), child)))
		id = h.Sum64()
	}
	return p9.QID{Type: p9.ModeFromOS(fi.Mode()).QIDType(), Path: id}
}

// child looks name up in folder n, without following it.
func (n *node) child(name string) (*node, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	h, err := n.handle()
	if err != nil {
		return nil, err
	}
	fi, err := h.Lstat(name)
	if err != nil {
		return nil, errno(err)
	}
	if err := n.s.checkReach(fi); err != nil {
		return nil, err
	}
	return &node{s: n.s, parent: n, name: name, info: fi}, nil
}

// Walk implements p9.File. The server walks one name at a time.
func (n *node) Walk(names []string) ([]p9.QID, p9.File, error) {
	switch len(names) {
	case 0:
		p, name := n.loc()
		c := &node{s: n.s, parent: p, name: name, info: n.info}
		if n.isRoot() {
			c.dir = n.s.root
		}
		return nil, c, nil
	case 1:
		c, err := n.child(names[0])
		if err != nil {
			return nil, nil, err
		}
		return []p9.QID{n.qid(c.info, names[0])}, c, nil
	}
	return nil, nil, linux.EINVAL
}

// WalkGetAttr implements p9.File with the attributes the walk's lookup found.
func (n *node) WalkGetAttr(names []string) ([]p9.QID, p9.File, p9.AttrMask, p9.Attr, error) {
	qids, f, err := n.Walk(names)
	if err != nil {
		return nil, nil, p9.AttrMask{}, p9.Attr{}, err
	}
	c := f.(*node)
	mask, attr := attrOf(c.info)
	return qids, f, mask, attr, nil
}

// stat reads the node's attributes now.
func (n *node) stat() (os.FileInfo, error) {
	n.mu.Lock()
	f, d := n.file, n.dir
	n.mu.Unlock()
	switch {
	case f != nil:
		return f.Stat()
	case d != nil:
		return d.Lstat(".")
	}
	ph, name, err := n.parentHandle()
	if err != nil {
		return nil, err
	}
	return ph.Lstat(name)
}

// GetAttr implements p9.File.
func (n *node) GetAttr(p9.AttrMask) (p9.QID, p9.AttrMask, p9.Attr, error) {
	fi, err := n.stat()
	if err != nil {
		return p9.QID{}, p9.AttrMask{}, p9.Attr{}, errno(err)
	}
	mask, attr := attrOf(fi)
	return n.selfQID(fi), mask, attr, nil
}

// selfQID is the node's own QID given its attributes.
func (n *node) selfQID(fi os.FileInfo) p9.QID {
	p, name := n.loc()
	if p == nil {
		return n.qid(fi, "")
	}
	return p.qid(fi, name)
}

// Open implements p9.File. A file is opened by its name, checked to be the file the guest
// walked to, and only then truncated: a name swapped for a symlink is never truncated
// through.
func (n *node) Open(mode p9.OpenFlags) (p9.QID, uint32, error) {
	flag, err := access(mode)
	if err != nil {
		return p9.QID{}, 0, err
	}
	write, trunc := flag != os.O_RDONLY, mode&dotlTrunc != 0
	if n.s.ro && (write || trunc) {
		return p9.QID{}, 0, errReadOnly
	}
	if trunc && !write {
		return p9.QID{}, 0, linux.EINVAL
	}
	var f *os.File
	if n.info.IsDir() {
		if write {
			return p9.QID{}, 0, linux.EISDIR
		}
		h, err := n.handle()
		if err != nil {
			return p9.QID{}, 0, err
		}
		if f, err = h.Open("."); err != nil {
			return p9.QID{}, 0, errno(err)
		}
	} else {
		ph, name, err := n.parentHandle()
		if err != nil {
			return p9.QID{}, 0, err
		}
		if err := n.adoptName(ph, name); err != nil {
			return p9.QID{}, 0, err
		}
		if f, err = ph.OpenFile(name, flag, 0); err != nil {
			return p9.QID{}, 0, errno(err)
		}
	}
	fi, err := f.Stat()
	if err == nil && !same(fi, n.info) {
		err = errMoved
	}
	if err == nil && trunc {
		err = f.Truncate(0)
	}
	if err != nil {
		f.Close()
		return p9.QID{}, 0, errno(err)
	}
	n.mu.Lock()
	again := n.file != nil
	if !again {
		n.file, n.writable = f, write
	}
	n.mu.Unlock()
	if again {
		// 9P opens a fid once (the p9 server checks it too): a second open would leak the
		// first descriptor.
		f.Close()
		return p9.QID{}, 0, linux.EINVAL
	}
	return n.selfQID(fi), 0, nil
}

func (n *node) opened() (*os.File, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.file == nil {
		return nil, linux.EBADF
	}
	return n.file, nil
}

// ReadAt implements p9.File.
func (n *node) ReadAt(p []byte, off int64) (int, error) {
	f, err := n.opened()
	if err != nil {
		return 0, err
	}
	k, err := f.ReadAt(p, off)
	if k == 0 && errors.Is(err, io.EOF) && n.replaced() {
		return 0, errMoved
	}
	return k, err
}

// replaced reports whether the node's name now holds another file than the one it
// has open (a host save by rename). The guest keeps one inode per dentry it holds, so
// its size is then the new file's: a read past the old file's end must fail, not answer
// an end the guest's kernel asks again for ever.
func (n *node) replaced() bool {
	ph, name, err := n.parentHandle()
	if err != nil {
		return false
	}
	_, err = n.sameName(ph, name)
	return errors.Is(err, errMoved)
}

// WriteAt implements p9.File.
func (n *node) WriteAt(p []byte, off int64) (int, error) {
	if n.s.ro {
		return 0, errReadOnly
	}
	f, err := n.opened()
	if err != nil {
		return 0, err
	}
	k, err := f.WriteAt(p, off)
	return k, errno(err)
}

// FSync implements p9.File.
func (n *node) FSync() error {
	f, err := n.opened()
	if err != nil {
		return err
	}
	return errno(f.Sync())
}

// Create implements p9.File: a new file, never one that exists (O_EXCL, so never through
// a symlink either).
func (n *node) Create(name string, flags p9.OpenFlags, perm p9.FileMode, _ p9.UID, _ p9.GID) (p9.File, p9.QID, uint32, error) {
	if n.s.ro {
		return nil, p9.QID{}, 0, errReadOnly
	}
	if err := checkName(name); err != nil {
		return nil, p9.QID{}, 0, err
	}
	flag, err := access(flags)
	if err != nil {
		return nil, p9.QID{}, 0, err
	}
	h, err := n.handle()
	if err != nil {
		return nil, p9.QID{}, 0, err
	}
	f, err := h.OpenFile(name, flag|os.O_CREATE|os.O_EXCL, n.s.mode(perm))
	if err != nil {
		return nil, p9.QID{}, 0, errno(err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, p9.QID{}, 0, errno(err)
	}
	c := &node{s: n.s, parent: n, name: name, info: fi, file: f, writable: flag != os.O_RDONLY}
	return c, n.qid(fi, name), 0, nil
}

// made returns the QID of what was just made at name in h.
func (n *node) made(h *os.Root, name string) (p9.QID, error) {
	fi, err := h.Lstat(name)
	if err != nil {
		return p9.QID{}, errno(err)
	}
	return n.qid(fi, name), nil
}

// changeIn checks a change to name in folder n and returns n's handle.
func (n *node) changeIn(name string) (*os.Root, error) {
	if n.s.ro {
		return nil, errReadOnly
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	return n.handle()
}

// Mkdir implements p9.File.
func (n *node) Mkdir(name string, perm p9.FileMode, _ p9.UID, _ p9.GID) (p9.QID, error) {
	h, err := n.changeIn(name)
	if err != nil {
		return p9.QID{}, err
	}
	if err := h.Mkdir(name, n.s.mode(perm)); err != nil {
		return p9.QID{}, errno(err)
	}
	return n.made(h, name)
}

// Symlink implements p9.File. The target is the guest's to resolve; the server never
// follows it.
func (n *node) Symlink(target, name string, _ p9.UID, _ p9.GID) (p9.QID, error) {
	h, err := n.changeIn(name)
	if err != nil {
		return p9.QID{}, err
	}
	if target == "" || strings.IndexByte(target, 0) >= 0 {
		return p9.QID{}, linux.EINVAL
	}
	if err := h.Symlink(target, name); err != nil {
		return p9.QID{}, errno(err)
	}
	return n.made(h, name)
}

// Mknod implements p9.File: no device nodes, FIFOs or sockets on the host.
func (n *node) Mknod(name string, _ p9.FileMode, _, _ uint32, _ p9.UID, _ p9.GID) (p9.QID, error) {
	if _, err := n.changeIn(name); err != nil {
		return p9.QID{}, err
	}
	return p9.QID{}, linux.EPERM
}

// Link implements p9.File.
func (n *node) Link(target p9.File, name string) error {
	h, err := n.changeIn(name)
	if err != nil {
		return err
	}
	t, ok := target.(*node)
	if !ok || t.s != n.s {
		return linux.EXDEV
	}
	if t.info.IsDir() {
		return linux.EPERM
	}
	th, tname, err := t.parentHandle()
	if err != nil {
		return err
	}
	if th == h {
		return errno(h.Link(tname, name))
	}
	p, _ := t.loc()
	return errno(linkAcross(p, th, tname, n, h, name))
}

// Rename implements p9.File; the server uses RenameAt.
func (n *node) Rename(p9.File, string) error { return linux.ENOSYS }

// RenameAt implements p9.File.
func (n *node) RenameAt(oldName string, newDir p9.File, newName string) error {
	oh, err := n.changeIn(oldName)
	if err != nil {
		return err
	}
	to, ok := newDir.(*node)
	if !ok || to.s != n.s {
		return linux.EXDEV
	}
	nh, err := to.changeIn(newName)
	if err != nil {
		return err
	}
	if err := checkChangeAt(n.s, oh, oldName); err != nil {
		return err
	}
	if err := checkChangeAt(n.s, nh, newName); err != nil {
		return err
	}
	if oh == nh {
		return errno(oh.Rename(oldName, newName))
	}
	return errno(renameAcross(n, oh, oldName, to, nh, newName))
}

// checkChangeAt refuses moving or replacing what name in h is, when it is or holds a
// denied path.
func checkChangeAt(s *share, h *os.Root, name string) error {
	fi, err := h.Lstat(name)
	if err != nil {
		return nil // nothing there: the change itself reports what is wrong
	}
	return s.checkChange(fi)
}

// Renamed implements p9.File.
func (n *node) Renamed(newDir p9.File, newName string) {
	p, ok := newDir.(*node)
	n.mu.Lock()
	defer n.mu.Unlock()
	if ok {
		n.parent = p
	}
	n.name = newName
}

// UnlinkAt implements p9.File.
func (n *node) UnlinkAt(name string, flags uint32) error {
	h, err := n.changeIn(name)
	if err != nil {
		return err
	}
	fi, err := h.Lstat(name)
	if err != nil {
		return errno(err)
	}
	if err := n.s.checkChange(fi); err != nil {
		return err
	}
	switch dir := flags&atRemoveDir != 0; {
	case dir && !fi.IsDir():
		return linux.ENOTDIR
	case !dir && fi.IsDir():
		return linux.EISDIR
	}
	return errno(h.Remove(name))
}

// SetAttr implements p9.File: size, mode and times. UID and GID are accepted and not
// recorded (see the package comment); the host sets ctime itself.
func (n *node) SetAttr(valid p9.SetAttrMask, attr p9.SetAttr) error {
	if valid == (p9.SetAttrMask{}) {
		return nil
	}
	if n.s.ro {
		return errReadOnly
	}
	if valid.Size {
		if err := n.truncate(int64(attr.Size)); err != nil {
			return err
		}
	}
	if valid.Permissions {
		if err := n.chmod(os.FileMode(attr.Permissions.Permissions()) & 0o777); err != nil {
			return err
		}
	}
	if valid.ATime || valid.MTime {
		now := time.Now()
		var at, mt time.Time // zero: left as it is
		if valid.ATime {
			at = now
			if valid.ATimeNotSystemTime {
				at = time.Unix(int64(attr.ATimeSeconds), int64(attr.ATimeNanoSeconds))
			}
		}
		if valid.MTime {
			mt = now
			if valid.MTimeNotSystemTime {
				mt = time.Unix(int64(attr.MTimeSeconds), int64(attr.MTimeNanoSeconds))
			}
		}
		if err := n.chtimes(at, mt); err != nil {
			return err
		}
	}
	return nil
}

// sameName checks that name in ph still holds the node: not another file, and not a
// symlink that an operation by name would follow. It returns what the name holds, with
// errMoved when that is not the node.
func (n *node) sameName(ph *os.Root, name string) (os.FileInfo, error) {
	fi, err := ph.Lstat(name)
	if err != nil {
		return nil, errno(err)
	}
	if !same(fi, n.info) {
		return fi, errMoved
	}
	return fi, nil
}

// adoptName is sameName for an open, which also takes a regular file put under the
// name in place of the regular file the guest walked to (an editor's save: a new file
// renamed over the old) as the node's, as a fresh lookup would find it. GetAttr already
// answers for the name's file; an ESTALE here would not be retried past a dentry the
// guest holds open, so the guest's next open of a saved file would fail while any of its
// processes had the old one open. A symlink, FIFO or folder in its place stays ESTALE.
// The fid being opened is one the guest cloned for this open, so nothing else reads
// info meanwhile (info is read without the lock everywhere).
func (n *node) adoptName(ph *os.Root, name string) error {
	fi, err := n.sameName(ph, name)
	if !errors.Is(err, errMoved) || !fi.Mode().IsRegular() || !n.info.Mode().IsRegular() {
		return err
	}
	n.info = fi
	return nil
}

// same reports whether a and b are one file. The type is compared too: a symlink made
// where a file was deleted can get the file's inode number.
func same(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Mode().Type() == b.Mode().Type()
}

func (n *node) truncate(size int64) error {
	if n.info.IsDir() {
		return linux.EISDIR
	}
	n.mu.Lock()
	f, w := n.file, n.writable
	n.mu.Unlock()
	if f != nil && w {
		return errno(f.Truncate(size))
	}
	ph, name, err := n.parentHandle()
	if err != nil {
		return err
	}
	// Opened first and checked after: a truncate reaches only the file the guest walked to.
	f, err = ph.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		return errno(err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !same(fi, n.info) {
		return errMoved
	}
	return errno(f.Truncate(size))
}

func (n *node) chmod(m os.FileMode) error {
	if n.info.Mode()&os.ModeSymlink != 0 {
		return linux.EOPNOTSUPP // Linux has no mode on symlinks either
	}
	if err := n.s.checkChange(n.info); err != nil {
		return err
	}
	n.mu.Lock()
	f := n.file
	n.mu.Unlock()
	if f != nil {
		return errno(f.Chmod(m))
	}
	if n.info.IsDir() {
		h, err := n.handle()
		if err != nil {
			return err
		}
		return errno(h.Chmod(".", m))
	}
	ph, name, err := n.parentHandle()
	if err != nil {
		return err
	}
	if _, err := n.sameName(ph, name); err != nil {
		return err
	}
	return errno(ph.Chmod(name, m))
}

func (n *node) chtimes(at, mt time.Time) error {
	if n.info.IsDir() {
		h, err := n.handle()
		if err != nil {
			return err
		}
		return errno(h.Chtimes(".", at, mt))
	}
	ph, name, err := n.parentHandle()
	if err != nil {
		return err
	}
	if _, err := n.sameName(ph, name); err != nil {
		return err
	}
	return errno(chtimesAt(ph, name, at, mt))
}

// Readlink implements p9.File.
func (n *node) Readlink() (string, error) {
	ph, name, err := n.parentHandle()
	if err != nil {
		return "", err
	}
	t, err := ph.Readlink(name)
	return t, errno(err)
}

// SetXattr implements p9.File: extended attributes are not stored on the host.
func (n *node) SetXattr(string, []byte, p9.XattrFlags) error {
	if n.s.ro {
		return errReadOnly
	}
	return linux.EOPNOTSUPP
}

// RemoveXattr implements p9.File.
func (n *node) RemoveXattr(string) error {
	if n.s.ro {
		return errReadOnly
	}
	return linux.EOPNOTSUPP
}

// GetXattr implements p9.File.
func (n *node) GetXattr(string) ([]byte, error) { return nil, linux.ENODATA }

// ListXattrs implements p9.File.
func (n *node) ListXattrs() ([]string, error) { return nil, nil }

// StatFS implements p9.File.
func (n *node) StatFS() (p9.FSStat, error) { return p9.FSStat{}, linux.ENOSYS }

// Lock implements p9.File with whole-file host locks where the host has them.
func (n *node) Lock(_ int, lt p9.LockType, _ p9.LockFlags, _, _ uint64, _ string) (p9.LockStatus, error) {
	f, err := n.opened()
	if err != nil {
		return p9.LockStatusError, err
	}
	return lock(f, lt)
}

// Close implements p9.File.
func (n *node) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.file != nil {
		n.file.Close()
	}
	if n.dir != nil && !n.isRoot() {
		n.dir.Close()
	}
	return nil
}
