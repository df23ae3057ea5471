package share9p

import (
	"os"
	"path"
	"time"

	"github.com/hugelgupf/p9/linux"
	"github.com/hugelgupf/p9/p9"
	"golang.org/x/sys/windows"
)

// processUmask: Windows has none; files get the permissions the guest asks for.
var processUmask os.FileMode

// fileID: a FileInfo here does not show the file index; the QID is hashed from the path.
func fileID(os.FileInfo) (uint64, bool) { return 0, false }

func attrOf(fi os.FileInfo) (p9.AttrMask, p9.Attr) { return basicAttr(fi) }

// renameAcross renames by paths below the share's root: Windows has no renameat. Both
// paths are still resolved inside the root handle.
func renameAcross(from *node, _ *os.Root, oldName string, to *node, _ *os.Root, newName string) error {
	return from.s.root.Rename(path.Join(from.rel(), oldName), path.Join(to.rel(), newName))
}

// linkAcross links by paths below the share's root, as renameAcross.
func linkAcross(from *node, _ *os.Root, oldName string, to *node, _ *os.Root, newName string) error {
	return from.s.root.Link(path.Join(from.rel(), oldName), path.Join(to.rel(), newName))
}

func chtimesAt(h *os.Root, name string, at, mt time.Time) error {
	fi, err := h.Lstat(name)
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return linux.EOPNOTSUPP // os.Root would set the target's times
	}
	return h.Chtimes(name, at, mt)
}

// lock: the guest's locks are its own; Windows byte-range locks would bind other
// programs on the host too.
func lock(*os.File, p9.LockType) (p9.LockStatus, error) { return p9.LockStatusOK, linux.ENOSYS }

var errnos = []errnoPair{
	{windows.ERROR_FILE_NOT_FOUND, linux.ENOENT}, {windows.ERROR_PATH_NOT_FOUND, linux.ENOENT},
	{windows.ERROR_ACCESS_DENIED, linux.EACCES}, {windows.ERROR_FILE_EXISTS, linux.EEXIST},
	{windows.ERROR_ALREADY_EXISTS, linux.EEXIST}, {windows.ERROR_DIR_NOT_EMPTY, linux.ENOTEMPTY},
	{windows.ERROR_SHARING_VIOLATION, linux.EBUSY}, {windows.ERROR_LOCK_VIOLATION, linux.EAGAIN},
	{windows.ERROR_DISK_FULL, linux.ENOSPC}, {windows.ERROR_HANDLE_DISK_FULL, linux.ENOSPC},
	{windows.ERROR_NOT_SAME_DEVICE, linux.EXDEV}, {windows.ERROR_DIRECTORY, linux.ENOTDIR},
	{windows.ERROR_FILENAME_EXCED_RANGE, linux.ENAMETOOLONG}, {windows.ERROR_INVALID_NAME, linux.EINVAL},
	{windows.ERROR_NOT_SUPPORTED, linux.EOPNOTSUPP}, {windows.ERROR_PRIVILEGE_NOT_HELD, linux.EPERM},
	{windows.ERROR_CANT_RESOLVE_FILENAME, linux.ELOOP}, {windows.ERROR_WRITE_PROTECT, linux.EROFS},
}
