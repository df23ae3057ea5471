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
	// ACPI did not rule the bus out, so its driver gets a try (and fails).
	m.present = map[string]func() bool{"hv_vmbus.ko": func() bool { return true }}
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

	// ACPI lists no VMBus: the driver is not even tried, nor is what needs it.
	os.WriteFile(list, []byte("virtio_blk.ko\nhv_vmbus.ko\nhv_storvsc.ko hv_vmbus.ko\n"), 0o644)
	if m, err = readModuleList(dir); err != nil {
		t.Fatal(err)
	}
	m.present = map[string]func() bool{"hv_vmbus.ko": func() bool { return false }}
	tried = nil
	m.load(m.root, load)
	if want := []string{"virtio_blk.ko"}; !reflect.DeepEqual(tried, want) {
		t.Fatalf("without a VMBus loaded %v, want %v", tried, want)
	}
}

// listFrom writes text as a load.list and reads it back.
func listFrom(t *testing.T, text string) *moduleList {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "load.list"), []byte(text), 0o644)
	m, err := readModuleList(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// timedLoad is a loader that notes when each module's load starts and ends, taking
// took(name) in between; events returns the notes in order.
func timedLoad(took func(name string) time.Duration) (load func(int, string) error, events func() []string) {
	var mu sync.Mutex
	var notes []string
	note := func(e string) { mu.Lock(); notes = append(notes, e); mu.Unlock() }
	load = func(_ int, name string) error {
		note("start " + name)
		time.Sleep(took(name))
		note("end " + name)
		return nil
	}
	return load, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), notes...) }
}

func TestLoadModuleListParallelAfterDependencies(t *testing.T) {
	m := listFrom(t, "slow.ko\nneeds_slow.ko slow.ko\nfree.ko\n")
	load, notes := timedLoad(func(name string) time.Duration {
		if name == "slow.ko" {
			return 200 * time.Millisecond
		}
		return 0
	})
	m.load(m.root, load)
	events := notes()
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

// TestACPIHas: Hyper-V's VMBus is found under any of its IDs, QEMU's ACPI devices do not
// pass for it, and without ACPI the driver still gets its try.
func TestACPIHas(t *testing.T) {
	qemu, hyperv := t.TempDir(), t.TempDir()
	for _, d := range []string{"PNP0A08:00", "LNXCPU:00", "QEMU0002:00"} {
		os.Mkdir(filepath.Join(qemu, d), 0o755)
	}
	os.Mkdir(filepath.Join(hyperv, "VMBus:00"), 0o755)
	ids := []string{"VMBUS", "VMBus", "MSFT1000"}
	if acpiHas(qemu, ids...) {
		t.Error("QEMU's ACPI devices were taken for a VMBus")
	}
	if !acpiHas(hyperv, ids...) {
		t.Error("Hyper-V's VMBus:00 was not found")
	}
	if !acpiHas(filepath.Join(qemu, "absent"), ids...) {
		t.Error("without ACPI the driver should get its try")
	}
}

func TestLoadModuleListFirstPartOneAtATime(t *testing.T) {
	m := listFrom(t, "virtio_balloon.ko\nother_key.ko\n==\nvirtio_blk.ko\n--\next4.ko\n")
	names := func(lines [][]string) (n []string) {
		for _, l := range lines {
			n = append(n, l[0])
		}
		return n
	}
	if got := [][]string{names(m.first), names(m.root), names(m.rest)}; !reflect.DeepEqual(got, [][]string{{"virtio_balloon.ko", "other_key.ko"}, {"virtio_blk.ko"}, {"ext4.ko"}}) {
		t.Fatalf("parts %v, want first, root and rest as the markers split them", got)
	}
	// Each load takes a while: room for an overlap to show.
	load, notes := timedLoad(func(string) time.Duration { return 50 * time.Millisecond })
	m.loadInOrder(m.first, load)
	want := []string{"start virtio_balloon.ko", "end virtio_balloon.ko", "start other_key.ko", "end other_key.ko"}
	if events := notes(); !reflect.DeepEqual(events, want) {
		t.Fatalf("first part loaded as %v, want one at a time in order %v", events, want)
	}
	if !m.wait("virtio_balloon.ko") {
		t.Fatal("a module of the first part is not marked loaded")
	}
}
