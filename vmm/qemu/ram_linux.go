package qemu

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// On Linux guest RAM is a memfd the host agent creates and QEMU maps shared. Suspend then
// migrates only device state (x-ignore-shared) and the agent writes the RAM out itself,
// sparsely; restore copies it back into a fresh memfd, which is far faster than QEMU
// parsing a stream of every page.
const sharedRAM = true

// ramPath is where QEMU finds the memfd: the first inherited descriptor.
const ramPath = "/dev/fd/3"

func newRAM(mib int64) (*os.File, error) {
	fd, err := unix.MemfdCreate("skiff-ram", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("qemu: guest memory: %w", err)
	}
	f := os.NewFile(uintptr(fd), "skiff-ram")
	if err := f.Truncate(mib << 20); err != nil {
		f.Close()
		return nil, fmt.Errorf("qemu: guest memory: %w", err)
	}
	return f, nil
}

const pageSize = 4096

// copySparse copies src's data to dst at the same offsets and leaves holes wherever src
// has holes or zero pages: a 2 GiB guest that uses 300 MiB saves about 300 MiB.
func copySparse(dst, src *os.File, size int64) error {
	if err := dst.Truncate(size); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	zero := make([]byte, pageSize)
	sfd := int(src.Fd())
	for off := int64(0); off < size; {
		data, err := unix.Seek(sfd, off, unix.SEEK_DATA)
		if err != nil {
			if err == unix.ENXIO { // no data after off
				return nil
			}
			return fmt.Errorf("seek data: %w", err)
		}
		hole, err := unix.Seek(sfd, data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("seek hole: %w", err)
		}
		for p := data; p < hole; {
			n := min(int64(len(buf)), hole-p)
			if _, err := src.ReadAt(buf[:n], p); err != nil && err != io.EOF {
				return err
			}
			// Write runs of non-zero pages; zero pages stay holes.
			for i := int64(0); i < n; {
				if bytes.Equal(buf[i:i+pageSize], zero) {
					i += pageSize
					continue
				}
				j := i + pageSize
				for j < n && !bytes.Equal(buf[j:j+pageSize], zero) {
					j += pageSize
				}
				if _, err := dst.WriteAt(buf[i:j], p+i); err != nil {
					return err
				}
				i = j
			}
			p += n
		}
		off = hole
	}
	return nil
}
