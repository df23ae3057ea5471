package share9p

import (
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/hugelgupf/p9/p9"
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

// attrOf is what the guest sees of fi.
func attrOf(fi os.FileInfo) (p9.AttrMask, p9.Attr) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return basicAttr(fi)
	}
	return statMask, p9.Attr{
		Mode:             p9.FileMode(st.Mode),
		UID:              p9.UID(st.Uid),
		GID:              p9.GID(st.Gid),
		NLink:            p9.NLink(st.Nlink),
		RDev:             p9.Dev(st.Rdev),
		Size:             uint64(st.Size),
		BlockSize:        uint64(st.Blksize),
		Blocks:           uint64(st.Blocks),
		ATimeSeconds:     uint64(st.Atim.Sec),
		ATimeNanoSeconds: uint64(st.Atim.Nsec),
		MTimeSeconds:     uint64(st.Mtim.Sec),
		MTimeNanoSeconds: uint64(st.Mtim.Nsec),
		CTimeSeconds:     uint64(st.Ctim.Sec),
		CTimeNanoSeconds: uint64(st.Ctim.Nsec),
	}
}
