//go:build linux || darwin

package share9p

import (
	"errors"
	"os"
	"syscall"
	"time"

	"github.com/hugelgupf/p9/linux"
	"github.com/hugelgupf/p9/p9"
	"golang.org/x/sys/unix"
)

// fileID is the inode number.
func fileID(fi os.FileInfo) (uint64, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return uint64(st.Ino), true
}

// attrOf is what the guest sees of fi. macOS numbers file types as Linux does.
func attrOf(fi os.FileInfo) (p9.AttrMask, p9.Attr) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return basicAttr(fi)
	}
	a, m, c := statTimes(st)
	return statMask, p9.Attr{
		Mode:             p9.FileMode(st.Mode),
		UID:              p9.UID(st.Uid),
		GID:              p9.GID(st.Gid),
		NLink:            p9.NLink(st.Nlink),
		RDev:             p9.Dev(st.Rdev),
		Size:             uint64(st.Size),
		BlockSize:        uint64(st.Blksize),
		Blocks:           uint64(st.Blocks),
		ATimeSeconds:     uint64(a.Sec),
		ATimeNanoSeconds: uint64(a.Nsec),
		MTimeSeconds:     uint64(m.Sec),
		MTimeNanoSeconds: uint64(m.Nsec),
		CTimeSeconds:     uint64(c.Sec),
		CTimeNanoSeconds: uint64(c.Nsec),
	}
}

// withDirFD runs fn with a descriptor of folder h, for the *at calls os.Root lacks.
func withDirFD(h *os.Root, fn func(fd int) error) error {
	f, err := h.Open(".")
	if err != nil {
		return err
	}
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// renameAcross renames between two folder handles (os.Root renames within one).
func renameAcross(_ *node, from *os.Root, oldName string, _ *node, to *os.Root, newName string) error {
	return withDirFD(from, func(a int) error {
		return withDirFD(to, func(b int) error { return unix.Renameat(a, oldName, b, newName) })
	})
}

// linkAcross links between two folder handles, never following a symlink.
func linkAcross(_ *node, from *os.Root, oldName string, _ *node, to *os.Root, newName string) error {
	return withDirFD(from, func(a int) error {
		return withDirFD(to, func(b int) error { return unix.Linkat(a, oldName, b, newName, 0) })
	})
}

// chtimesAt sets the times of name in h itself, never of what a symlink there points to.
// A zero time is left as it is.
func chtimesAt(h *os.Root, name string, at, mt time.Time) error {
	if at.IsZero() || mt.IsZero() {
		fi, err := h.Lstat(name)
		if err != nil {
			return err
		}
		_, a := attrOf(fi)
		if at.IsZero() {
			at = time.Unix(int64(a.ATimeSeconds), int64(a.ATimeNanoSeconds))
		}
		if mt.IsZero() {
			mt = fi.ModTime()
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(at.UnixNano()), unix.NsecToTimespec(mt.UnixNano())}
	return withDirFD(h, func(fd int) error { return unix.UtimesNanoAt(fd, name, ts, unix.AT_SYMLINK_NOFOLLOW) })
}

// lock takes or drops a whole-file host lock without waiting: the guest's kernel asks
// again while a blocking request is answered "blocked".
func lock(f *os.File, lt p9.LockType) (p9.LockStatus, error) {
	how := unix.LOCK_NB
	switch lt {
	case p9.ReadLock:
		how |= unix.LOCK_SH
	case p9.WriteLock:
		how |= unix.LOCK_EX
	default:
		how = unix.LOCK_UN
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return p9.LockStatusError, errno(err)
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = unix.Flock(int(fd), how) }); err != nil {
		return p9.LockStatusError, errno(err)
	}
	switch {
	case errors.Is(ferr, unix.EWOULDBLOCK):
		return p9.LockStatusBlocked, nil
	case ferr != nil:
		return p9.LockStatusError, nil
	}
	return p9.LockStatusOK, nil
}

// errnos pairs the host's errnos with Linux's (the same numbers on Linux, not on macOS).
var errnos = []errnoPair{
	{syscall.EPERM, linux.EPERM}, {syscall.ENOENT, linux.ENOENT}, {syscall.EINTR, linux.EINTR},
	{syscall.EIO, linux.EIO}, {syscall.ENXIO, linux.ENXIO}, {syscall.EBADF, linux.EBADF},
	{syscall.EAGAIN, linux.EAGAIN}, {syscall.ENOMEM, linux.ENOMEM}, {syscall.EACCES, linux.EACCES},
	{syscall.EBUSY, linux.EBUSY}, {syscall.EEXIST, linux.EEXIST}, {syscall.EXDEV, linux.EXDEV},
	{syscall.ENODEV, linux.ENODEV}, {syscall.ENOTDIR, linux.ENOTDIR}, {syscall.EISDIR, linux.EISDIR},
	{syscall.EINVAL, linux.EINVAL}, {syscall.ENFILE, linux.ENFILE}, {syscall.EMFILE, linux.EMFILE},
	{syscall.ETXTBSY, linux.ETXTBSY}, {syscall.EFBIG, linux.EFBIG}, {syscall.ENOSPC, linux.ENOSPC},
	{syscall.EROFS, linux.EROFS}, {syscall.EMLINK, linux.EMLINK}, {syscall.ERANGE, linux.ERANGE},
	{syscall.ENAMETOOLONG, linux.ENAMETOOLONG}, {syscall.ENOTEMPTY, linux.ENOTEMPTY},
	{syscall.ELOOP, linux.ELOOP}, {syscall.EDQUOT, linux.EDQUOT}, {syscall.ESTALE, linux.ESTALE},
	{syscall.EOPNOTSUPP, linux.EOPNOTSUPP}, {syscall.ENOTSUP, linux.EOPNOTSUPP},
	{syscall.EOVERFLOW, linux.EOVERFLOW}, {syscall.ENOSYS, linux.ENOSYS},
}
