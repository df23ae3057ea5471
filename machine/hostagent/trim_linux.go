package hostagent

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// trimResident unmaps the pages of this program's own code and read-only data: the
// agent is the whole skiff binary, and start-up (commands, image code, every package's
// init, the kernel mapping neighbours of each page it faults) leaves most of its 20 MB
// resident though idling touches little of it. The pages are clean copies of the file:
// what is used again faults back in from the page cache, and RSS then says what the
// agent really holds. A mapping holding any page of its own (Anonymous in smaps: a
// position-independent build's relocated read-only data) is left as it is: dropping
// those pages would fault the unrelocated file back in. It returns the bytes unmapped.
func trimResident() (int64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, err
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	type mapping struct {
		start, end uint64
		anon       bool
	}
	var maps []mapping
	var cur *mapping // the exe's read-only private mapping being read, if any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) == 0 {
			continue
		}
		if v, ok := strings.CutSuffix(fl[0], ":"); ok && !strings.Contains(fl[0], "-") {
			if cur != nil && v == "Anonymous" && len(fl) > 1 && fl[1] != "0" {
				cur.anon = true
			}
			continue
		}
		// A mapping's first line: start-end perms offset dev inode path.
		cur = nil
		if len(fl) < 6 || fl[5] != exe || strings.Contains(fl[1], "w") || !strings.HasSuffix(fl[1], "p") {
			continue
		}
		lo, hi, ok := strings.Cut(fl[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if !ok || err1 != nil || err2 != nil || end <= start {
			continue
		}
		maps = append(maps, mapping{start: start, end: end})
		cur = &maps[len(maps)-1]
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	var total int64
	for _, m := range maps {
		if m.anon {
			continue
		}
		// Not unix.Madvise: the range is the program's own image, no Go slice.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(m.start), uintptr(m.end-m.start), unix.MADV_DONTNEED); errno != 0 {
			return total, fmt.Errorf("madvise %x-%x: %w", m.start, m.end, errno)
		}
		total += int64(m.end - m.start)
	}
	return total, nil
}
