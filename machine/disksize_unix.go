//go:build !windows

package machine

import (
	"os"
	"syscall"
)

// fileSizes returns a file's apparent size and the bytes it occupies on disk.
func fileSizes(p string) (int64, int64) {
	st, err := os.Stat(p)
	if err != nil {
		return 0, 0
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return st.Size(), sys.Blocks * 512
	}
	return st.Size(), st.Size()
}
