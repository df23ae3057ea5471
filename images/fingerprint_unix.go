//go:build linux || darwin

package images

import (
	"os"
	"syscall"
)

// fingerprintOf reads the open file's fingerprint with fstat.
func fingerprintOf(f *os.File) (fingerprint, bool) {
	st, err := f.Stat()
	if err != nil {
		return fingerprint{}, false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fingerprint{}, false
	}
	return fingerprint{Size: st.Size(), Mtime: st.ModTime().UnixNano(), Ctime: ctime(sys),
		Dev: uint64(sys.Dev), Ino: uint64(sys.Ino)}, true
}
