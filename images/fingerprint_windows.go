package images

import (
	"os"
	"unsafe"

	"golang.org/x/sys/windows"
)

// fileBasicInfo is FILE_BASIC_INFO: its ChangeTime moves on every write and attribute
// change, and no API user sets it back.
type fileBasicInfo struct {
	CreationTime, LastAccessTime, LastWriteTime, ChangeTime int64
	FileAttributes                                          uint32
	_                                                       uint32
}

// fingerprintOf reads the open file's fingerprint from its handle.
func fingerprintOf(f *os.File) (fingerprint, bool) {
	h := windows.Handle(f.Fd())
	var id windows.ByHandleFileInformation
	if windows.GetFileInformationByHandle(h, &id) != nil {
		return fingerprint{}, false
	}
	var basic fileBasicInfo
	if windows.GetFileInformationByHandleEx(h, windows.FileBasicInfo, (*byte)(unsafe.Pointer(&basic)), uint32(unsafe.Sizeof(basic))) != nil {
		return fingerprint{}, false
	}
	return fingerprint{
		Size:  int64(id.FileSizeHigh)<<32 | int64(id.FileSizeLow),
		Mtime: unixNano(basic.LastWriteTime), Ctime: unixNano(basic.ChangeTime),
		Dev: uint64(id.VolumeSerialNumber), Ino: uint64(id.FileIndexHigh)<<32 | uint64(id.FileIndexLow),
	}, true
}

// unixNano converts a Windows time (100 ns since 1601) to ns since 1970.
func unixNano(t int64) int64 { return (t - 116444736000000000) * 100 }
