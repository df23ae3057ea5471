package share9p

import (
	"os"
	"syscall"

	"github.com/hugelgupf/p9/p9"
)

// processUmask is the umask the host agent started with. macOS has no call that only
// reads it, so it is read by setting it and back, once, during package initialisation,
// before anything of this program creates files.
var processUmask = func() os.FileMode {
	m := syscall.Umask(0o022)
	syscall.Umask(m)
	return os.FileMode(m) & 0o777
}()

// attrOf is what the guest sees of fi. macOS numbers file types as Linux does.
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
		RDev:             p9.Dev(uint32(st.Rdev)),
		Size:             uint64(st.Size),
		BlockSize:        uint64(st.Blksize),
		Blocks:           uint64(st.Blocks),
		ATimeSeconds:     uint64(st.Atimespec.Sec),
		ATimeNanoSeconds: uint64(st.Atimespec.Nsec),
		MTimeSeconds:     uint64(st.Mtimespec.Sec),
		MTimeNanoSeconds: uint64(st.Mtimespec.Nsec),
		CTimeSeconds:     uint64(st.Ctimespec.Sec),
		CTimeNanoSeconds: uint64(st.Ctimespec.Nsec),
	}
}
