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

// saveRAM copies the guest memory in ram to dst at the same offsets, leaving holes
// wherever ram has holes or zero pages: a 2 GiB guest that uses 300 MiB saves about that.
func saveRAM(dst, ram *os.File, size int64) error {
	if err := dst.Truncate(size); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	zero := make([]byte, pageSize)
	return forExtents(ram, size, func(off, n int64) error {
		for p := off; p < off+n; {
			chunk := min(int64(len(buf)), off+n-p)
			if _, err := ram.ReadAt(buf[:chunk], p); err != nil && err != io.EOF {
				return err
			}
			// Write runs of non-zero pages; zero pages stay holes.
			for i := int64(0); i < chunk; {
				if bytes.Equal(buf[i:i+pageSize], zero) {
					i += pageSize
					continue
				}
				j := i + pageSize
				for j < chunk && !bytes.Equal(buf[j:j+pageSize], zero) {
					j += pageSize
				}
				if _, err := dst.WriteAt(buf[i:j], p+i); err != nil {
					return err
				}
				i = j
			}
			p += chunk
		}
		return nil
	})
}

// loadRAM fills ram from a saved file. The file is sparse already, so its data extents
// are copied whole, in the kernel, without a look at their bytes.
func loadRAM(ram, src *os.File, size int64) error {
	if err := ram.Truncate(size); err != nil {
		return err
	}
	return forExtents(src, size, func(off, n int64) error {
		// sendfile works across filesystems, where copy_file_range says EXDEV.
		if _, err := ram.Seek(off, io.SeekStart); err != nil {
			return err
		}
		for n > 0 {
			roff := off
			c, err := unix.Sendfile(int(ram.Fd()), int(src.Fd()), &roff, int(min(n, 1<<30)))
			if err != nil {
				return fmt.Errorf("copy guest memory: %w", err)
			}
			if c == 0 {
				return io.ErrUnexpectedEOF
			}
			off, n = off+int64(c), n-int64(c)
		}
		return nil
	})
}

// forExtents calls fn for each data extent of f below size.
func forExtents(f *os.File, size int64, fn func(off, n int64) error) error {
	fd := int(f.Fd())
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err == unix.ENXIO { // no data after off
			return nil
		}
		if err != nil {
			return fmt.Errorf("seek data: %w", err)
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("seek hole: %w", err)
		}
		hole = min(hole, size)
		if err := fn(data, hole-data); err != nil {
			return err
		}
		off = hole
	}
	return nil
}
