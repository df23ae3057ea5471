package fsevents

import (
	"errors"
	"path/filepath"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A network file system's guest kernel hears only of the guest's own operations, so
// a change made on the host raises no inotify event in the guest. The guest agent raises
// one by doing, on the share's mount, an operation that the VFS reports and that leaves
// the host's data as it was. What each host change becomes (the watcher sees the events
// in order; all carry the entry's own name in its directory's watch):
//
//	modified file  IN_OPEN, IN_MODIFY, IN_CLOSE_WRITE: the file opened for writing, its
//	               mtime set (an mtime set alone is reported as IN_MODIFY), then
//	               closed. On virtiofs the mtime is set to the value just read from
//	               the open file, so nothing changes but the ctime (a host write in
//	               that one round trip would keep the earlier mtime). On 9p the guest
//	               kernel keeps a set mtime to whole seconds (its super block's time
//	               granularity), which would move the file back in time by up to a
//	               second (and make chokidar, which compares atime and mtime, drop the
//	               next change): there a file written in the last few seconds has its
//	               mtime set to the host's "now" (forward by the event's delay, never
//	               back), and an older mtime (an archive's, cp -p's) is kept: the
//	               file gets IN_ATTRIB instead.
//	created file   IN_ATTRIB (its mode set to the mode it has), then as modified.
//	created dir    IN_ATTRIB|IN_ISDIR.
//	deleted file   IN_CREATE then IN_DELETE: a dangling symlink made under the name
//	               and removed (it points into /dev/null, so a host program that opens
//	               the name in that instant fails rather than writing somewhere).
//	deleted dir    IN_CREATE|IN_ISDIR then IN_DELETE|IN_ISDIR (an empty directory made
//	               and removed: rmdir can remove nothing else).
//	renamed        the old name as deleted, the new one as created.
//
// A real IN_CREATE or IN_MOVED_TO under the name of a file that exists on the host is
// out of reach without making the name vanish from the host for a moment (a program on
// the host opening it then would fail): a create is raised as IN_ATTRIB (plus the
// write events for a file), which rescanning watchers (chokidar, Node's fs.watch users)
// and reloaders take as a change. No IN_DELETE_SELF reaches a watch on the deleted entry
// itself (its inode stays alive in the guest).

// attrs is what the guest knows of a directory entry. full is false for an entry seen
// only in a directory listing (inode and type, no stat).
type attrs struct {
	ino   uint64
	mode  uint32 // type and permissions, as stat's st_mode
	size  uint64
	mtime unix.StatxTimestamp
	atime unix.StatxTimestamp
	full  bool
}

func (a attrs) isDir() bool { return a.mode&unix.S_IFMT == unix.S_IFDIR }

// same reports whether b shows nothing new against a (ctime aside: raising events
// changes it).
func (a attrs) same(b attrs) bool {
	return a.full && b.full && a.ino == b.ino && a.mode == b.mode && a.size == b.size && a.mtime == b.mtime
}

// statEntry stats p afresh from the host (virtiofs otherwise answers from its cache); a
// name whose inode has no links left is gone.
func statEntry(p string) (attrs, bool, error) {
	var st unix.Statx_t
	err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW|unix.AT_STATX_FORCE_SYNC, unix.STATX_BASIC_STATS, &st)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ESTALE) || err == nil && st.Nlink == 0 {
		return attrs{}, false, nil
	}
	if err != nil {
		return attrs{}, false, err
	}
	return attrs{ino: st.Ino, mode: uint32(st.Mode), size: st.Size, mtime: st.Mtime, atime: st.Atime, full: true}, true, nil
}

// timeGrain is how finely a share's mount keeps the timestamps the guest sets.
type timeGrain int

const (
	grainNanos   timeGrain = iota // virtiofs: an mtime can be set back exactly
	grainSeconds                  // 9p: the guest kernel truncates a set mtime to whole seconds
)

// recentWrite is how old an mtime may be for a 9p file to have it moved to now (see
// above): the delay of a host change to its guest event, with room for a busy host.
const recentWrite = 3 * time.Second

// errOldMtime: the file's mtime can neither be set back exactly nor moved to now.
var errOldMtime = errors.New("mtime cannot be kept on this mount")

// emitModify raises IN_OPEN, IN_MODIFY and IN_CLOSE_WRITE on a regular file.
func emitModify(p string, a attrs, grain timeGrain) error {
	if grain == grainSeconds && a.mtime.Nsec != 0 {
		// Decided before the open, whose close alone raises IN_CLOSE_WRITE. A host
		// write after the batch's stat is reported in a batch of its own.
		if age := time.Since(time.Unix(a.mtime.Sec, int64(a.mtime.Nsec))); age > recentWrite || age < -time.Second {
			return errOldMtime
		}
	}
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// An mtime alone set is reported as IN_MODIFY (fsnotify_change). (fallocate would
	// raise it too, but file systems move the mtime on it, and 9p has none.) A recent 9p
	// file's goes to the server's clock, never before the write, with no read first.
	mtime := unix.Timespec{Nsec: unix.UTIME_NOW}
	if grain == grainNanos || a.mtime.Nsec == 0 {
		// The value to set back is read from the open file just before: the batch's
		// stat may predate a later host write.
		var st unix.Statx_t
		if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_FORCE_SYNC, unix.STATX_MTIME, &st); err != nil {
			return err
		}
		if grain == grainNanos || st.Mtime.Nsec == 0 {
			mtime = unix.Timespec{Sec: st.Mtime.Sec, Nsec: int64(st.Mtime.Nsec)}
		}
	}
	ts := [2]unix.Timespec{{Nsec: unix.UTIME_OMIT}, mtime}
	// utimensat(fd, NULL, ...) is futimens: x/sys has no call that passes a NULL path.
	if _, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0); e != 0 {
		return e
	}
	return nil
}

// emitAttrib raises IN_ATTRIB on an entry by setting what it already has.
func emitAttrib(p string, a attrs) error {
	if a.mode&unix.S_IFMT == unix.S_IFLNK {
		ts := []unix.Timespec{{Sec: a.atime.Sec, Nsec: int64(a.atime.Nsec)}, {Sec: a.mtime.Sec, Nsec: int64(a.mtime.Nsec)}}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	return unix.Fchmodat(unix.AT_FDCWD, p, a.mode&0o7777, 0)
}

// emitWrite raises what a modified file becomes, or IN_ATTRIB where the file cannot be
// opened for writing (a busy executable, a file the server refuses to open so) or its
// mtime cannot be kept.
func emitWrite(p string, a attrs, grain timeGrain) error {
	err := emitModify(p, a, grain)
	if err == nil {
		return nil
	}
	if aerr := emitAttrib(p, a); aerr != nil {
		return errors.Join(err, aerr)
	}
	return nil
}

// emitCreate raises what a created entry becomes (see above).
func emitCreate(p string, a attrs, grain timeGrain) error {
	err := emitAttrib(p, a)
	if a.mode&unix.S_IFMT == unix.S_IFREG && err == nil {
		if err = emitModify(p, a, grain); errors.Is(err, errOldMtime) {
			err = nil // IN_ATTRIB is raised already
		}
	}
	return err
}

// placeholderTarget is where a delete's placeholder symlink points: nowhere, and
// nothing can be created through it.
const placeholderTarget = "/dev/null/skiff-fsevents"

// emitDelete raises IN_CREATE then IN_DELETE for a name gone from dir. It fails with
// EEXIST when the name is back already.
func emitDelete(dir, name string, wasDir bool) error {
	p := filepath.Join(dir, name)
	if wasDir {
		if err := unix.Mkdir(p, 0o700); err != nil {
			return err
		}
		return unix.Rmdir(p)
	}
	if err := unix.Symlink(placeholderTarget, p); err != nil {
		return err
	}
	// Only the placeholder goes: if anything took the name meanwhile, it stays.
	buf := make([]byte, len(placeholderTarget)+1)
	if n, err := unix.Readlink(p, buf); err != nil || string(buf[:n]) != placeholderTarget {
		return errors.Join(err, unix.EEXIST)
	}
	return unix.Unlink(p)
}

// dirent is one directory entry as getdents gives it: no stat needed.
type dirent struct {
	ino uint64
	typ uint8
}

// isDir reports whether a listed entry of folder dir is a folder. An entry without a
// type (DT_UNKNOWN, or one the kernel does not define) is asked itself.
func (e dirent) isDir(dir, name string) bool {
	switch e.typ {
	case unix.DT_DIR:
		return true
	case unix.DT_REG, unix.DT_LNK, unix.DT_FIFO, unix.DT_SOCK, unix.DT_CHR, unix.DT_BLK:
		return false
	}
	var st unix.Stat_t
	return unix.Lstat(filepath.Join(dir, name), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR
}

// readDir lists a directory with its entries' inodes and types.
func readDir(p string) (map[string]dirent, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	out := map[string]dirent{}
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return out, nil
		}
		for off := 0; off < n; {
			// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
			rec := buf[off:]
			reclen := int(*(*uint16)(unsafe.Pointer(&rec[16])))
			if reclen == 0 || off+reclen > n {
				break
			}
			name := rec[19:reclen]
			for i, c := range name {
				if c == 0 {
					name = name[:i]
					break
				}
			}
			if s := string(name); s != "." && s != ".." {
				out[s] = dirent{ino: *(*uint64)(unsafe.Pointer(&rec[0])), typ: rec[18]}
			}
			off += reclen
		}
	}
}
