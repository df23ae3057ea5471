package guestinit

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

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
	var mu sync.Mutex
	var tried []string
	load := func(_ int, name string) error {
		mu.Lock()
		defer mu.Unlock()
		tried = append(tried, name)
		if name == "hv_vmbus.ko" {
			return unix.ENODEV // not on Hyper-V
		}
		return nil
	}
	m.load(m.root, load)
	sort.Strings(tried)
	if want := []string{"hv_vmbus.ko", "squashfs.ko", "virtio_blk.ko"}; !reflect.DeepEqual(tried, want) {
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

func TestLoadModuleListParallelAfterDependencies(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "load.list"), []byte("slow.ko\nneeds_slow.ko slow.ko\nfree.ko\n"), 0o644)
	m, err := readModuleList(dir)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var events []string
	note := func(e string) { mu.Lock(); events = append(events, e); mu.Unlock() }
	m.load(m.root, func(_ int, name string) error {
		note("start " + name)
		if name == "slow.ko" {
			time.Sleep(200 * time.Millisecond)
		}
		note("end " + name)
		return nil
	})
	at := func(e string) int {
		for i, x := range events {
			if x == e {
				return i
			}
		}
		t.Fatalf("no %q in %v", e, events)
		return -1
	}
	if at("start needs_slow.ko") < at("end slow.ko") {
		t.Errorf("a module started before the module it needs was in: %v", events)
	}
	if at("end free.ko") > at("end slow.ko") {
		t.Errorf("a module that needs nothing waited for a slow one: %v", events)
	}
	if !m.wait("needs_slow.ko") || m.wait("not_listed.ko") {
		t.Errorf("wait: loaded=%v for needs_slow.ko, %v for a module not in the list", m.wait("needs_slow.ko"), m.wait("not_listed.ko"))
	}
}
