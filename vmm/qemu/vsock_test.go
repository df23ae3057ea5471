package qemu

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/skiff-dev/skiff/vmm"
)

// The vsock device is added only where the host's vhost-vsock device opens, and only then
// does the VM offer the host a vsock dialer. (Nothing here dials: on this CI host the
// vsock device leads to the outer hypervisor.)
func TestVsockProbe(t *testing.T) {
	old := vhostVsockDev
	t.Cleanup(func() { vhostVsockDev = old })

	vhostVsockDev = filepath.Join(t.TempDir(), "missing")
	if (&Backend{}).vsockUsable() {
		t.Fatal("usable without the device")
	}
	vhostVsockDev = filepath.Join(t.TempDir(), "vhost-vsock")
	os.WriteFile(vhostVsockDev, nil, 0o600)
	if !(&Backend{}).vsockUsable() {
		t.Fatal("not usable with an openable device")
	}
	if (&Backend{Vsock: VsockOff}).vsockUsable() {
		t.Fatal("usable although switched off")
	}
	os.Chmod(vhostVsockDev, 0o400) // opened read-write or not at all
	if os.Geteuid() != 0 && (&Backend{}).vsockUsable() {
		t.Fatal("usable although the device does not open read-write")
	}

	cid := newCID()
	if cid < 3 || cid == 0xFFFFFFFF {
		t.Fatalf("CID %d is reserved", cid)
	}
	if got := vsockArgs(cid); !slices.Equal(got, []string{"-device", "vhost-vsock-pci,guest-cid=" + strconv.FormatUint(uint64(cid), 10)}) {
		t.Fatalf("vsock args %q", got)
	}
	if vsockArgs(0) != nil {
		t.Fatal("a VM without a CID got a vsock device")
	}
	if _, ok := (&VM{}).handle().(vmm.GuestDialer); ok {
		t.Fatal("a VM without vsock offers a vsock dialer")
	}
	if _, ok := (&VM{cid: cid}).handle().(vmm.GuestDialer); !ok {
		t.Fatal("a VM with vsock offers no vsock dialer")
	}
}
