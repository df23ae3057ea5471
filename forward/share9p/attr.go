package share9p

import (
	"os"

	"github.com/hugelgupf/p9/p9"
)

// statMask is what attrOf fills in from a host stat.
var statMask = p9.AttrMask{Mode: true, NLink: true, UID: true, GID: true, RDev: true,
	ATime: true, MTime: true, CTime: true, INo: true, Size: true, Blocks: true}

// basicAttr is what a FileInfo alone tells: type, permissions, size and mtime.
func basicAttr(fi os.FileInfo) (p9.AttrMask, p9.Attr) {
	mt := fi.ModTime()
	size := uint64(fi.Size())
	return p9.AttrMask{Mode: true, NLink: true, ATime: true, MTime: true, CTime: true, INo: true, Size: true, Blocks: true},
		p9.Attr{
			Mode:             p9.ModeFromOS(fi.Mode()),
			NLink:            1,
			Size:             size,
			BlockSize:        4096,
			Blocks:           (size + 511) / 512,
			ATimeSeconds:     uint64(mt.Unix()),
			ATimeNanoSeconds: uint64(mt.Nanosecond()),
			MTimeSeconds:     uint64(mt.Unix()),
			MTimeNanoSeconds: uint64(mt.Nanosecond()),
			CTimeSeconds:     uint64(mt.Unix()),
			CTimeNanoSeconds: uint64(mt.Nanosecond()),
		}
}
