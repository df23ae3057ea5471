package hyperv

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"time"
)

// Hyper-V attaches only VHD/VHDX files, and Convert-VHD reads only VHD/VHDX. A fixed VHD
// is a raw image plus a 512-byte footer, so the image's raw disks become VHDs in pure Go
// and Convert-VHD turns them into dynamic VHDXs.

const sector = 512

// vhdEpoch is where VHD timestamps count from.
var vhdEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// vhdFooter builds the footer of a fixed VHD of size bytes (a multiple of 512).
func vhdFooter(size int64, now time.Time, id [16]byte) []byte {
	f := make([]byte, sector)
	copy(f[0:], "conectix")
	binary.BigEndian.PutUint32(f[8:], 2)           // features: reserved bit, always set
	binary.BigEndian.PutUint32(f[12:], 0x00010000) // format version 1.0
	binary.BigEndian.PutUint64(f[16:], ^uint64(0)) // data offset: none for fixed disks
	binary.BigEndian.PutUint32(f[24:], uint32(now.Sub(vhdEpoch)/time.Second))
	copy(f[28:], "skf ")                             // creator application
	binary.BigEndian.PutUint32(f[32:], 0x00010000)   // creator version
	copy(f[36:], "Wi2k")                             // creator host OS
	binary.BigEndian.PutUint64(f[40:], uint64(size)) // original size
	binary.BigEndian.PutUint64(f[48:], uint64(size)) // current size
	c, h, s := chs(size)
	binary.BigEndian.PutUint16(f[56:], c)
	f[58], f[59] = h, s
	binary.BigEndian.PutUint32(f[60:], 2) // disk type: fixed
	copy(f[68:], id[:])
	binary.BigEndian.PutUint32(f[64:], vhdChecksum(f))
	return f
}

func vhdChecksum(f []byte) uint32 {
	var sum uint32
	for i, b := range f {
		if i >= 64 && i < 68 {
			continue // the checksum field itself
		}
		sum += uint32(b)
	}
	return ^sum
}

// chs is the disk geometry algorithm of the VHD specification (appendix "CHS calculation").
func chs(size int64) (cyl uint16, heads, spt uint8) {
	total := size / sector
	if total > 65535*16*255 {
		total = 65535 * 16 * 255
	}
	var s, h, cth int64
	if total >= 65535*16*63 {
		s, h = 255, 16
		cth = total / s
	} else {
		s = 17
		cth = total / s
		h = (cth + 1023) / 1024
		if h < 4 {
			h = 4
		}
		if cth >= h*1024 || h > 16 {
			s, h = 31, 16
			cth = total / s
		}
		if cth >= h*1024 {
			s, h = 63, 16
			cth = total / s
		}
	}
	return uint16(cth / h), uint8(h), uint8(s)
}

// rawToVHD copies the raw image src into a fixed VHD at dst, padding to whole sectors.
func rawToVHD(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	n, err := io.Copy(out, in)
	if err == nil && n%sector != 0 {
		_, err = out.Write(make([]byte, sector-n%sector))
		n += sector - n%sector
	}
	var id [16]byte
	rand.Read(id[:])
	if err == nil {
		_, err = out.Write(vhdFooter(n, time.Now(), id))
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
		return fmt.Errorf("make VHD from %s: %w", src, err)
	}
	return nil
}
