//go:build !windows

package machine

import (
	"io/fs"
	"syscall"
)

func fileIdentity(fi fs.FileInfo) (changeNano int64, inode uint64) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0
	}
	return statCtime(st), uint64(st.Ino)
}
