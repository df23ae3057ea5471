package share9p

import (
	"github.com/hugelgupf/p9/p9"
)

// Readdir lists a folder once per open fid and answers each Treaddir from that snapshot,
// at the offset the guest asks for and only with what fits in count bytes. (The p9
// library's own local files treated the byte budget as an entry count and kept no
// position, so a guest saw 8,737 of 10,000 files.) An entry's Offset is its position
// plus one. A rewind to 0 reuses the snapshot: a fresh listing comes with a fresh open,
// which is what readers of a changed folder do.
func (n *node) Readdir(offset uint64, count uint32) (p9.Dirents, error) {
	f, err := n.opened()
	if err != nil {
		return nil, err
	}
	n.listMu.Lock()
	defer n.listMu.Unlock()
	if !n.listed {
		if n.entries, err = n.list(f); err != nil {
			return nil, err
		}
		n.listed = true
	}
	if offset >= uint64(len(n.entries)) {
		return nil, nil
	}
	var out p9.Dirents
	used := 0
	for _, d := range n.entries[offset:] {
		if used += direntSize(d); used > int(count) {
			break
		}
		out = append(out, d)
	}
	return out, nil
}

// list reads the open folder f, each entry looked up by name in the folder's handle.
func (n *node) list(f interface{ Readdirnames(int) ([]string, error) }) (p9.Dirents, error) {
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, errno(err)
	}
	h, err := n.handle()
	if err != nil {
		return nil, err
	}
	ents := make(p9.Dirents, 0, len(names))
	for _, name := range names {
		fi, err := h.Lstat(name)
		if err != nil {
			continue // gone since the listing
		}
		q := n.qid(fi, name)
		ents = append(ents, p9.Dirent{QID: q, Type: direntType(q.Type), Name: name, Offset: uint64(len(ents) + 1)})
	}
	return ents, nil
}

// Linux's directory entry types (DT_*), which Rreaddir's type byte carries through to
// getdents as d_type (QEMU's server sends these). The qid's own type bits there (0x80 for
// a folder) are no DT_* value: readers fell back to an lstat per entry, a round trip
// each on this server, and anything trusting d_type saw no folders.
const (
	dtUnknown = 0
	dtDir     = 4
	dtReg     = 8
	dtLnk     = 10
)

func direntType(t p9.QIDType) p9.QIDType {
	switch {
	case t&p9.TypeDir != 0:
		return dtDir
	case t&p9.TypeSymlink != 0:
		return dtLnk
	case t == p9.TypeRegular:
		return dtReg
	}
	return dtUnknown
}

// direntSize is an entry's size in an Rreaddir: qid, offset, type, name.
func direntSize(d p9.Dirent) int { return 13 + 8 + 1 + 2 + len(d.Name) }
