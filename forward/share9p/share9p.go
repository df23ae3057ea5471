// Package share9p serves a host folder over 9P2000.L on any stream: the Go file server
// the guest mounts with trans=fd over the host<->guest transport. Hyper-V has no virtio-9p
// or virtiofs, so this is how its guests see host folders; here it runs on QEMU too.
//
// What the guest may do to the host, and what it may not:
//   - Every name is resolved one component at a time against an open handle of the folder
//     it is in (os.Root), never as a path string, and the server follows no symlink: a
//     folder swapped for a symlink after the guest walked into it is not followed, and
//     nothing outside Root can be reached. The guest's kernel reads symlinks and walks
//     their targets itself, inside the mount.
//   - A read-only share refuses, at the server, everything that changes the host: writes,
//     opens for writing or truncation, create, mkdir, symlink, link, mknod, rename, unlink,
//     setattr and xattrs. The guest's mount flags alone could be undone by its root.
//   - Deny names host paths (Skiff's own data) that the guest never reaches, even when
//     they sit inside Root: they are recognised by identity (device and inode), so no
//     other name or link leads to them. The folders above them cannot be moved, removed
//     or chmodded either: a guest that moved Skiff's data aside could put its own there.
//   - Files and folders the guest creates get the mode it asks for, without set-id or
//     sticky bits, masked by the umask the host agent started with; the process umask is
//     never changed.
//   - chown is accepted and records nothing: the guest's user and group ids mean nothing
//     on the host, where files belong to the user running Skiff. Refusing would break the
//     chown that many container entrypoints run on their bind mounts.
//   - Extended attributes are not stored on the host (setting one is EOPNOTSUPP, reading
//     one ENODATA); device nodes, FIFOs and sockets cannot be made (EPERM).
package share9p

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/hugelgupf/p9/p9"
)

// Options describe one share.
type Options struct {
	Root     string
	ReadOnly bool
	// Deny lists host paths the guest never reaches through this share, even inside
	// Root: Skiff's own data directory. A path that does not exist is skipped. A Root
	// that is a denied path or inside one is refused by Serve.
	Deny []string
	// Logf, when set, gets one line the first time (per connection) the guest is refused
	// a denied path.
	Logf func(format string, args ...any)
}

// ErrDenied is the reason a share or a path in it is refused: it is Skiff's own data.
var ErrDenied = errors.New("Skiff's own data is never shared with a machine")

// Serve answers 9P requests on conn until the guest unmounts or ctx ends.
func Serve(ctx context.Context, conn net.Conn, opt Options) error {
	s, err := newShare(opt, processUmask)
	if err != nil {
		conn.Close()
		return err
	}
	defer s.root.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	xc := newXattrConn(conn)
	return p9.NewServer(s).Handle(xc, xc)
}

// share is one served folder: its root handle and the rules every node follows.
type share struct {
	path  string // absolute host path of the root, for messages
	root  *os.Root
	ro    bool
	umask os.FileMode
	deny  []denied // never reached
	holds []denied // folders holding a denied path: never moved, removed or chmodded
	logf  func(string, ...any)

	logged sync.Map // refusals already logged
}

// denied is a host path known by identity; of is the denied path it is or holds.
type denied struct {
	path, of string
	info     os.FileInfo
}

func newShare(opt Options, umask os.FileMode) (*share, error) {
	abs, err := filepath.Abs(opt.Root)
	if err != nil {
		return nil, fmt.Errorf("share %s: %w", opt.Root, err)
	}
	if st, err := os.Stat(abs); err != nil || !st.IsDir() {
		return nil, &os.PathError{Op: "share", Path: abs, Err: os.ErrNotExist}
	}
	s := &share{path: abs, ro: opt.ReadOnly, umask: umask & 0o777, logf: opt.Logf}
	for _, d := range opt.Deny {
		if err := s.addDenied(d); err != nil {
			return nil, fmt.Errorf("share %s refused: cannot check denied path %s: %w", abs, d, err)
		}
	}
	if d, ok := s.rootDenied(abs); ok {
		return nil, fmt.Errorf("share %s refused: it is %s or inside it: %w", abs, d, ErrDenied)
	}
	if s.root, err = os.OpenRoot(abs); err != nil {
		return nil, fmt.Errorf("share %s: %w", abs, err)
	}
	return s, nil
}

// addDenied records d and the folders above it; a d that does not exist has nothing to
// protect.
func (s *share) addDenied(d string) error {
	d, err := filepath.Abs(d)
	if err != nil {
		return err
	}
	fi, err := os.Stat(d)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	s.deny = append(s.deny, denied{path: d, of: d, info: fi})
	real, err := filepath.EvalSymlinks(d)
	if err != nil {
		return err
	}
	for p := filepath.Dir(real); ; p = filepath.Dir(p) {
		if fi, err := os.Stat(p); err == nil {
			s.holds = append(s.holds, denied{path: p, of: d, info: fi})
		}
		if filepath.Dir(p) == p {
			return nil
		}
	}
}

// rootDenied reports the denied path that root is, or is inside of, following symlinks
// in root as the host does.
func (s *share) rootDenied(root string) (string, bool) {
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		real = root
	}
	for p := real; ; p = filepath.Dir(p) {
		if fi, err := os.Stat(p); err == nil {
			if d, ok := find(s.deny, fi); ok {
				return d.path, true
			}
		}
		if filepath.Dir(p) == p {
			return "", false
		}
	}
}

func find(list []denied, fi os.FileInfo) (denied, bool) {
	for _, d := range list {
		if os.SameFile(fi, d.info) {
			return d, true
		}
	}
	return denied{}, false
}

// checkReach refuses the guest a denied path.
func (s *share) checkReach(fi os.FileInfo) error {
	if d, ok := find(s.deny, fi); ok {
		return s.refuse(d.path, "access to "+d.path)
	}
	return nil
}

// checkChange refuses moving, removing or chmodding a denied path or a folder holding
// one: a guest that moved Skiff's data aside could put its own in its place.
func (s *share) checkChange(fi os.FileInfo) error {
	if err := s.checkReach(fi); err != nil {
		return err
	}
	if d, ok := find(s.holds, fi); ok {
		return s.refuse(d.path, "changing "+d.path+", which holds "+d.of)
	}
	return nil
}

// refuse logs a refusal once per connection and returns the guest's error.
func (s *share) refuse(key, what string) error {
	if _, seen := s.logged.LoadOrStore(key, true); !seen && s.logf != nil {
		s.logf("share %s: refused the guest %s: %v", s.path, what, ErrDenied)
	}
	return errDenied
}

// Attach implements p9.Attacher: every attach starts at the share's root.
func (s *share) Attach() (p9.File, error) {
	fi, err := s.root.Lstat(".")
	if err != nil {
		return nil, err
	}
	return &node{s: s, info: fi, dir: s.root}, nil
}
