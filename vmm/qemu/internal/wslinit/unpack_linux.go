package wslinit

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Unpack writes a tar's entries under dir as root would: owners, modes (set-id bits
// after the owner), device nodes, hard and symbolic links, and every mtime, directories'
// last (their entries change them). It is what `wsl --import` does with the root
// filesystem tar. It returns how many entries it wrote.
func Unpack(r io.Reader, dir string) (int, error) {
	tr := tar.NewReader(r)
	type dirTime struct {
		path string
		t    time.Time
	}
	var dirs []dirTime
	n := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, err
		}
		name := entryPath(dir, h.Name)
		if err := unpackEntry(tr, h, dir, name); err != nil {
			return n, fmt.Errorf("%s: %w", h.Name, err)
		}
		if h.Typeflag == tar.TypeDir {
			dirs = append(dirs, dirTime{name, h.ModTime})
		}
		n++
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		ts := unix.NsecToTimespec(dirs[i].t.UnixNano())
		unix.UtimesNanoAt(unix.AT_FDCWD, dirs[i].path, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
	}
	return n, nil
}

// entryPath places a tar name under dir: cleaned as an absolute path, a ".." cannot
// climb above it.
func entryPath(dir, name string) string { return filepath.Join(dir, filepath.Clean("/"+name)) }

func unpackEntry(tr *tar.Reader, h *tar.Header, dir, name string) error {
	mode := uint32(h.Mode) & 0o7777
	switch h.Typeflag {
	case tar.TypeDir:
		if err := os.Mkdir(name, 0o700); err != nil && !os.IsExist(err) {
			return err
		}
	case tar.TypeReg:
		f, err := os.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	case tar.TypeSymlink:
		os.Remove(name)
		if err := os.Symlink(h.Linkname, name); err != nil {
			return err
		}
	case tar.TypeLink:
		os.Remove(name)
		return os.Link(entryPath(dir, h.Linkname), name) // shares the target's owner, mode and time
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		kind := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[h.Typeflag]
		os.Remove(name)
		if err := unix.Mknod(name, kind|mode, int(unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor)))); err != nil {
			return err
		}
	default:
		return fmt.Errorf("tar entry type %q is not supported", h.Typeflag)
	}
	if err := os.Lchown(name, h.Uid, h.Gid); err != nil {
		return err
	}
	if h.Typeflag != tar.TypeSymlink {
		// After chown, which clears the set-id bits.
		if err := unix.Chmod(name, mode); err != nil {
			return err
		}
	}
	ts := unix.NsecToTimespec(h.ModTime.UnixNano())
	return unix.UtimesNanoAt(unix.AT_FDCWD, name, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}
