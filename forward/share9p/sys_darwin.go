package share9p

import (
	"os"
	"syscall"
)

// processUmask is the umask the host agent started with. macOS has no call that only
// reads it, so it is read by setting it and back, once, during package initialisation,
// before anything of this program creates files.
var processUmask = func() os.FileMode {
	m := syscall.Umask(0o022)
	syscall.Umask(m)
	return os.FileMode(m) & 0o777
}()

// statTimes are a stat's access, modification and change times.
func statTimes(st *syscall.Stat_t) (a, m, c syscall.Timespec) {
	return st.Atimespec, st.Mtimespec, st.Ctimespec
}
