package share9p

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// processUmask is the umask the host agent started with, read where reading it changes
// nothing: /proc shows it since Linux 4.7.
var processUmask = func() os.FileMode {
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Umask:"); ok {
				if m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil {
					return os.FileMode(m) & 0o777
				}
			}
		}
	}
	return umaskAtInit()
}()

// umaskAtInit reads the umask the only other way, by setting it and back, during package
// initialisation, before anything of this program creates files.
func umaskAtInit() os.FileMode {
	m := syscall.Umask(0o022)
	syscall.Umask(m)
	return os.FileMode(m) & 0o777
}

// statTimes are a stat's access, modification and change times.
func statTimes(st *syscall.Stat_t) (a, m, c syscall.Timespec) {
	return st.Atim, st.Mtim, st.Ctim
}
