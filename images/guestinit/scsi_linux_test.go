package guestinit

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeSys builds a sysfs tree: virtio-blk disks with serials, SCSI disks at H:C:T:L
// addresses, and each SCSI host's driver.
type fakeSys struct {
	t   *testing.T
	dir string
}

func newFakeSys(t *testing.T) fakeSys {
	return fakeSys{t, t.TempDir()}
}

func (s fakeSys) write(path, text string) {
	p := filepath.Join(s.dir, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text+"\n"), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

func (s fakeSys) virtioDisk(name, serial string) { s.write("block/"+name+"/serial", serial) }

func (s fakeSys) scsiHost(host int, driver string) {
	s.write(filepath.Join("class/scsi_host", "host"+strconv.Itoa(host), "proc_name"), driver)
}

func (s fakeSys) scsiDisk(name, hctl string) {
	if err := os.MkdirAll(filepath.Join(s.dir, "block", name, "device", "scsi_device", hctl), 0o755); err != nil {
		s.t.Fatal(err)
	}
}

// hypervLUNs is the table the UKI's command line carries (images/efiboot.sh), in
// vmm/hyperv's attach order.
var hypervLUNs = parseLUNs("skiff-boot,skiff-root,skiff-data,skiff-seed")

func TestFindDiskBySCSILUN(t *testing.T) {
	for _, driver := range []string{"storvsc_host", "virtio_scsi"} {
		s := newFakeSys(t)
		s.scsiHost(0, driver)
		// Probe order need not follow LUN order.
		for name, hctl := range map[string]string{"sda": "0:0:0:2", "sdb": "0:0:0:0", "sdc": "0:0:0:3", "sdd": "0:0:0:1"} {
			s.scsiDisk(name, hctl)
		}
		f := diskFinder{sys: s.dir, luns: hypervLUNs}
		for serial, want := range map[string]string{"skiff-root": "/dev/sdd", "skiff-data": "/dev/sda", "skiff-seed": "/dev/sdc", "skiff-boot": "/dev/sdb"} {
			if dev, err := f.find(serial); dev != want || err != nil {
				t.Errorf("%s host: %s found at %q (%v), want %s", driver, serial, dev, err, want)
			}
		}
		if dev, err := f.find("skiff-other"); dev != "" || err != nil {
			t.Errorf("a serial the table lacks was found: %q, %v", dev, err)
		}
	}
}

// Without skiff.luns (a direct kernel boot) a SCSI disk is never taken for a Skiff disk,
// and virtio serials work as before.
func TestFindDiskWithoutLUNTable(t *testing.T) {
	s := newFakeSys(t)
	s.virtioDisk("vda", "skiff-root")
	s.virtioDisk("vdb", "skiff-data")
	s.scsiHost(0, "virtio_scsi")
	s.scsiDisk("sda", "0:0:0:2")
	s.scsiDisk("sdb", "0:0:0:3")
	f := diskFinder{sys: s.dir, luns: parseLUNs("")}
	for serial, want := range map[string]string{"skiff-root": "/dev/vda", "skiff-data": "/dev/vdb", "skiff-seed": ""} {
		if dev, err := f.find(serial); dev != want || err != nil {
			t.Errorf("%s found at %q (%v), want %q", serial, dev, err, want)
		}
	}
	// With the table, a disk's serial still wins over a LUN.
	f.luns = hypervLUNs
	if dev, _ := f.find("skiff-data"); dev != "/dev/vdb" {
		t.Errorf("skiff-data found at %s, want the virtio disk with that serial", dev)
	}
	if dev, _ := f.find("skiff-seed"); dev != "/dev/sdb" {
		t.Errorf("skiff-seed found at %s, want LUN 3's sdb", dev)
	}
}

// Only storvsc and virtio-scsi hosts count: a USB stick or SATA disk at LUN 1 is not the root.
func TestFindDiskIgnoresOtherSCSIHosts(t *testing.T) {
	s := newFakeSys(t)
	s.scsiHost(0, "usb-storage")
	s.scsiHost(1, "ahci")
	s.scsiDisk("sda", "0:0:0:1")
	s.scsiDisk("sdb", "1:0:0:1")
	s.write("block/sdc/device/scsi_device/2:0:0:1/x", "") // a host with no proc_name
	s.write("block/sdd/device/scsi_device/bogus/x", "")   // not an H:C:T:L address
	f := diskFinder{sys: s.dir, luns: hypervLUNs}
	if dev, err := f.find("skiff-root"); dev != "" || err != nil {
		t.Fatalf("skiff-root found at %q (%v) on a host Skiff does not attach disks to", dev, err)
	}
}

// Two disks at the root's LUN (two controllers): the guest refuses to guess.
func TestFindDiskAmbiguousLUN(t *testing.T) {
	s := newFakeSys(t)
	s.scsiHost(0, "storvsc_host")
	s.scsiHost(1, "storvsc_host")
	s.scsiDisk("sda", "0:0:0:1")
	s.scsiDisk("sdb", "1:0:0:1")
	f := diskFinder{sys: s.dir, luns: hypervLUNs}
	dev, err := f.find("skiff-root")
	if dev != "" || err == nil || !strings.Contains(err.Error(), "sda, sdb") || !strings.Contains(err.Error(), "LUN 1") {
		t.Fatalf("two disks at LUN 1 gave %q, %v; want an error naming both", dev, err)
	}
}

func TestPCIHas(t *testing.T) {
	s := newFakeSys(t)
	s.write("bus/pci/devices/0000:00:01.0/vendor", "0x8086")
	s.write("bus/pci/devices/0000:00:01.0/device", "0x29c0")
	s.write("bus/pci/devices/0000:00:02.0/vendor", "0x1af4")
	s.write("bus/pci/devices/0000:00:02.0/device", "0x1001") // virtio-blk
	dir := filepath.Join(s.dir, "bus/pci/devices")
	if pciHas(dir, virtioSCSIIDs...) {
		t.Fatal("virtio-blk was taken for virtio-scsi")
	}
	s.write("bus/pci/devices/0000:00:03.0/vendor", "0x1af4")
	s.write("bus/pci/devices/0000:00:03.0/device", "0x1048")
	if !pciHas(dir, virtioSCSIIDs...) {
		t.Fatal("a modern virtio-scsi controller was not found")
	}
	if pciHas(filepath.Join(s.dir, "absent"), virtioSCSIIDs...) {
		t.Fatal("no PCI bus (Hyper-V Gen 2) read as virtio-scsi")
	}
}

// Without a SCSI host the SCSI core, virtio-scsi and the disk driver are not loaded;
// with virtio-scsi they are, before what needs them.
func TestLoadModuleListSCSIGate(t *testing.T) {
	const list = "virtio_blk.ko\nscsi_common.ko\nscsi_mod.ko scsi_common.ko\nvirtio_scsi.ko scsi_mod.ko scsi_common.ko\nsd_mod.ko scsi_mod.ko scsi_common.ko\nsquashfs.ko\n"
	for _, c := range []struct {
		virtioSCSI bool
		want       []string
	}{
		{false, []string{"squashfs.ko", "virtio_blk.ko"}},
		{true, []string{"scsi_common.ko", "scsi_mod.ko", "sd_mod.ko", "squashfs.ko", "virtio_blk.ko", "virtio_scsi.ko"}},
	} {
		m := listFrom(t, list)
		here := func() bool { return c.virtioSCSI }
		m.present = map[string]func() bool{"virtio_scsi.ko": here, "scsi_common.ko": here, "scsi_mod.ko": here}
		load, notes := timedLoad(func(string) time.Duration { return 0 })
		m.load(m.root, load)
		var tried []string
		for _, e := range notes() {
			if name, ok := strings.CutPrefix(e, "start "); ok {
				tried = append(tried, name)
			}
		}
		sort.Strings(tried)
		if !reflect.DeepEqual(tried, c.want) {
			t.Errorf("virtio-scsi present %v: loaded %v, want %v", c.virtioSCSI, tried, c.want)
		}
	}
}
