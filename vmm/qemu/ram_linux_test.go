package qemu

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Guest memory saved and loaded again is byte-identical, and the saved file holds only
// the pages that are not zero.
func TestRAMSaveLoad(t *testing.T) {
	const mib = 8
	ram, err := newRAM(mib)
	if err != nil {
		t.Fatal(err)
	}
	defer ram.Close()
	page := bytes.Repeat([]byte{0xa5}, pageSize)
	for _, off := range []int64{0, 5 * pageSize, 6 * pageSize, 3 << 20, (mib << 20) - pageSize} {
		ram.WriteAt(page, off)
	}
	ram.WriteAt(make([]byte, 64*pageSize), 1<<20) // written, but zero: must not be saved
	path := filepath.Join(t.TempDir(), "ram")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := saveRAM(f, ram, mib<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var st syscall.Stat_t
	syscall.Stat(path, &st)
	if st.Size != mib<<20 || st.Blocks*512 > 64*pageSize {
		t.Fatalf("saved file: %d bytes long, %d allocated; want %d long with about 5 pages allocated", st.Size, st.Blocks*512, mib<<20)
	}
	src, _ := os.Open(path)
	defer src.Close()
	back, err := newRAM(mib)
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	if err := loadRAM(back, src, mib<<20); err != nil {
		t.Fatal(err)
	}
	want, got := make([]byte, mib<<20), make([]byte, mib<<20)
	ram.ReadAt(want, 0)
	back.ReadAt(got, 0)
	if !bytes.Equal(want, got) {
		t.Fatal("loaded memory differs from the saved memory")
	}
}
