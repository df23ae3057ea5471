package machine

import "golang.org/x/sys/unix"

func hostMemoryMiB() int64 {
	n, err := unix.SysctlUint64("hw.memsize")
	if err != nil {
		return 0
	}
	return int64(n / (1 << 20))
}
