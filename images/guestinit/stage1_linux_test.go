package guestinit

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
)

func TestLoadModuleListSkipsWhatCannotLoad(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "load.list")
	// The shape rootfs.sh writes: dependencies first, each line naming what it needs.
	os.WriteFile(list, []byte("virtio_blk.ko\nhv_vmbus.ko\nscsi_mod.ko hv_vmbus.ko\nhv_storvsc.ko scsi_mod.ko hv_vmbus.ko\nsquashfs.ko\n--\nhv_netvsc.ko hv_vmbus.ko\next4.ko\n"), 0o644)
	m, err := readModuleList(dir)
	if err != nil {
		t.Fatal(err)
	}
	var tried []string
	load := func(_ int, name string) error {
		tried = append(tried, name)
		if name == "hv_vmbus.ko" {
			return unix.ENODEV // not on Hyper-V
		}
		return nil
	}
	m.load(m.root, load)
	if want := []string{"virtio_blk.ko", "hv_vmbus.ko", "squashfs.ko"}; !reflect.DeepEqual(tried, want) {
		t.Fatalf("root part loaded %v, want %v (what needs hv_vmbus must be skipped)", tried, want)
	}
	tried = nil
	m.load(m.rest, load)
	if want := []string{"ext4.ko"}; !reflect.DeepEqual(tried, want) {
		t.Fatalf("rest loaded %v, want %v", tried, want)
	}
	m.release()
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("release left %v", left)
	}
}
