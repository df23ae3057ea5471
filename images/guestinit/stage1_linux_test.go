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
	os.WriteFile(list, []byte("virtio_blk.ko\nhv_vmbus.ko\nscsi_mod.ko\nhv_storvsc.ko hv_vmbus.ko scsi_mod.ko\nhv_netvsc.ko hv_vmbus.ko\next4.ko scsi_mod.ko\n"), 0o644)
	var tried []string
	load := func(path string) error {
		tried = append(tried, filepath.Base(path))
		if filepath.Base(path) == "hv_vmbus.ko" {
			return unix.ENODEV // not on Hyper-V
		}
		return nil
	}
	if err := LoadModuleList(dir, list, load); err != nil {
		t.Fatal(err)
	}
	want := []string{"virtio_blk.ko", "hv_vmbus.ko", "scsi_mod.ko", "ext4.ko"}
	if !reflect.DeepEqual(tried, want) {
		t.Fatalf("loaded %v, want %v (modules needing hv_vmbus must be skipped)", tried, want)
	}
}
