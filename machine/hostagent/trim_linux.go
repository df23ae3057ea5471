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
// agent really holds. It returns the bytes unmapped.
func trimResident() (int64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, err
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var total int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fl := strings.Fields(sc.Text())
		if len(fl) < 6 || fl[5] != exe || strings.Contains(fl[1], "w") || !strings.HasSuffix(fl[1], "p") {
			continue
		}
		lo, hi, ok := strings.Cut(fl[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if !ok || err1 != nil || err2 != nil || end <= start {
			continue
		}
		// Not unix.Madvise: the range is the program's own image, no Go slice.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start), unix.MADV_DONTNEED); errno != 0 {
			return total, fmt.Errorf("madvise %s: %w", fl[0], errno)
		}
		total += int64(end - start)
	}
	return total, sc.Err()
}
