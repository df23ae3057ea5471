package share9p

import (
	"math"
	"sync"

	"github.com/hugelgupf/p9/p9"
)

// listing fixes directory reads of the p9 library's local files. Their Readdir treats
// the byte budget of Treaddir as an entry count and keeps no position of its own, so the
// entries that did not fit into one answer were lost, and a continued listing skipped
// more: a guest saw 8,737 of 10,000 files. listing reads the directory once per open fid
// and answers each Treaddir from that snapshot, at the offset the guest asks for and only
// with what fits.
type listing struct {
	p9.File

	mu      sync.Mutex
	entries p9.Dirents
	read    bool
}

func wrapListing(f p9.File) p9.File {
	if f == nil {
		return nil
	}
	return &listing{File: f}
}

func (l *listing) Walk(names []string) ([]p9.QID, p9.File, error) {
	q, f, err := l.File.Walk(names)
	return q, wrapListing(f), err
}

func (l *listing) WalkGetAttr(names []string) ([]p9.QID, p9.File, p9.AttrMask, p9.Attr, error) {
	q, f, m, a, err := l.File.WalkGetAttr(names)
	return q, wrapListing(f), m, a, err
}

// direntSize is an entry's size in an Rreaddir: qid, offset, type, name.
func direntSize(d p9.Dirent) int { return 13 + 8 + 1 + 2 + len(d.Name) }

// Readdir answers with the entries after offset (an entry's Offset is its position plus
// one) that fit in count bytes. A rewind to 0 reuses the snapshot: a fresh listing comes
// with a fresh open, which is what readers of a changed folder do.
func (l *listing) Readdir(offset uint64, count uint32) (p9.Dirents, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.read {
		all, err := l.File.Readdir(0, math.MaxUint32)
		if err != nil {
			return nil, err
		}
		for i := range all {
			all[i].Offset = uint64(i + 1)
		}
		l.entries, l.read = all, true
	}
	if offset >= uint64(len(l.entries)) {
		return nil, nil
	}
	var out p9.Dirents
	used := 0
	for _, d := range l.entries[offset:] {
		if used += direntSize(d); used > int(count) {
			break
		}
		out = append(out, d)
	}
	return out, nil
}
