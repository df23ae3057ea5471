package guestinit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// The data disk keeps a little space aside: a disk that filled up would otherwise stop
// the engine from starting (it writes at every start), and the machine from booting.
const (
	reserveFile = DataMount + "/.skiff-reserve"
	reserveSize = 64 << 20
)

// keepReserve releases the reserve when the data disk is full, so that the engine starts,
// and makes it again once there is room. It returns what the host should tell the user.
func keepReserve() (warning string, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(DataMount, &st); err != nil {
		return "", err
	}
	free := st.Bavail * uint64(st.Bsize)
	_, err = os.Stat(reserveFile)
	have := err == nil
	full := fmt.Sprintf("the machine's data disk is full (%d MiB free)", free>>20)
	fix := "free space (docker system prune) or grow the disk (skiff machine stop; skiff machine set --disk-size SIZE)"
	switch {
	case free < reserveSize && have:
		if err := os.Remove(reserveFile); err != nil {
			return full + ": " + fix, err
		}
		return fmt.Sprintf("%s: Skiff released its %d MiB reserve so that the engine could start; %s", full, reserveSize>>20, fix), nil
	case free < reserveSize:
		return full + ": " + fix, nil
	case !have && free > 4*reserveSize:
		f, err := os.OpenFile(reserveFile, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if errors.Is(err, fs.ErrExist) {
			return "", nil
		}
		if err != nil {
			return "", err
		}
		defer f.Close()
		// Allocated, not just sized: a sparse file would hold nothing back.
		if err := unix.Fallocate(int(f.Fd()), 0, 0, reserveSize); err != nil {
			os.Remove(reserveFile)
			return "", fmt.Errorf("data disk reserve: %w", err)
		}
	}
	return "", nil
}
