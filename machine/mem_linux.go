package machine

import "golang.org/x/sys/unix"

func hostMemoryMiB() int64 {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return 0
	}
	return int64(si.Totalram) * int64(si.Unit) / (1 << 20)
}
