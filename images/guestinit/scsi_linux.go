package guestinit

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Hyper-V cannot give a disk a serial. vmm/hyperv attaches the VM's disks as LUNs of one
// SCSI controller in a fixed order (the boot disk at LUN 0, then root, data, seed and the
// engine layer), and the boot disk's unified kernel image carries that order on the
// kernel command line:
//
//	skiff.luns=skiff-boot,skiff-root,skiff-data,skiff-seed,skiff-engine
//
// names the serial of the disk at LUN 0, 1, 2, .... A disk not found by its serial is
// looked for at its LUN, among the disks of a storvsc (Hyper-V) or virtio-scsi (QEMU
// standing in for Hyper-V in tests) host only. Without the argument, as in every direct
// kernel boot, no SCSI disk is ever taken for one of Skiff's.
const lunsArg = "skiff.luns"

// lunHosts are the SCSI host drivers (sysfs proc_name) whose disks the LUN table describes.
var lunHosts = map[string]bool{"storvsc_host": true, "virtio_scsi": true}

// diskFinder finds Skiff's disks under a sysfs tree.
type diskFinder struct {
	sys  string   // where sysfs is mounted
	luns []string // serial of the disk at each LUN; empty without skiff.luns
}

// bootDisks is the finder for this boot, read on first use: stage 1 mounts /proc after
// the package is initialised.
var bootDisks = sync.OnceValue(func() diskFinder {
	return diskFinder{sys: "/sys", luns: parseLUNs(cmdlineValue(lunsArg))}
})

// parseLUNs reads skiff.luns's value; an empty name leaves its LUN unused.
func parseLUNs(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// find returns /dev/NAME of the disk with serial, or "" while there is none. An error
// means waiting will not help (two disks claim the LUN).
func (f diskFinder) find(serial string) (string, error) {
	ents, _ := os.ReadDir(filepath.Join(f.sys, "block"))
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(f.sys, "block", e.Name(), "serial"))
		if err == nil && strings.TrimSpace(string(b)) == serial {
			return "/dev/" + e.Name(), nil
		}
	}
	lun := f.lunOf(serial)
	if lun < 0 {
		return "", nil
	}
	var found []string
	for _, e := range ents {
		if l, ok := f.scsiLUN(e.Name()); ok && l == lun {
			found = append(found, e.Name())
		}
	}
	switch len(found) {
	case 0:
		return "", nil
	case 1:
		return "/dev/" + found[0], nil
	}
	return "", fmt.Errorf("disks %s all sit at SCSI LUN %d, where %s=%s puts %s: cannot tell which one it is",
		strings.Join(found, ", "), lun, lunsArg, strings.Join(f.luns, ","), serial)
}

// lunOf is the LUN the table gives serial, or -1.
func (f diskFinder) lunOf(serial string) int {
	for i, s := range f.luns {
		if s == serial {
			return i
		}
	}
	return -1
}

// scsiLUN reads the LUN of block device name when it is a disk on one of lunHosts. Its
// device directory is named for the SCSI address H:C:T:L; the host's driver is named in
// scsi_host/hostH/proc_name.
func (f diskFinder) scsiLUN(name string) (int, bool) {
	addrs, err := os.ReadDir(filepath.Join(f.sys, "block", name, "device", "scsi_device"))
	if err != nil || len(addrs) != 1 {
		return 0, false
	}
	hctl := strings.Split(addrs[0].Name(), ":")
	if len(hctl) != 4 {
		return 0, false
	}
	driver, err := os.ReadFile(filepath.Join(f.sys, "class", "scsi_host", "host"+hctl[0], "proc_name"))
	if err != nil || !lunHosts[strings.TrimSpace(string(driver))] {
		return 0, false
	}
	lun, err := strconv.Atoi(hctl[3])
	return lun, err == nil
}

// virtioSCSIIDs are virtio-scsi's PCI IDs, legacy and modern.
var virtioSCSIIDs = []string{"1af4:1004", "1af4:1048"}

func virtioSCSIHere() bool { return pciHas("/sys/bus/pci/devices", virtioSCSIIDs...) }

// scsiHere says whether a SCSI host is here for Skiff's disks: loading the SCSI core
// (scsi_mod, sd_mod) took emulated CPU from every virtio-blk boot for nothing.
func scsiHere() bool { return virtioSCSIHere() || vmbusHere() }

// pciHas says whether a PCI device with one of the vendor:device IDs is under dir
// (/sys/bus/pci/devices).
func pciHas(dir string, ids ...string) bool {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		vendor, err1 := os.ReadFile(filepath.Join(dir, e.Name(), "vendor"))
		device, err2 := os.ReadFile(filepath.Join(dir, e.Name(), "device"))
		if err1 != nil || err2 != nil {
			continue
		}
		id := strings.TrimPrefix(strings.TrimSpace(string(vendor)), "0x") + ":" + strings.TrimPrefix(strings.TrimSpace(string(device)), "0x")
		for _, want := range ids {
			if id == want {
				return true
			}
		}
	}
	return false
}
