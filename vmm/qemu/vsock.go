package qemu

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/skiff-dev/skiff/forward/transport"
	"github.com/skiff-dev/skiff/vmm"
)

// vhostVsockDev is the host kernel's vsock device for guests (CONFIG_VHOST_VSOCK).
var vhostVsockDev = "/dev/vhost-vsock"

// vsockUsable says whether QEMU can give the guest a vsock device: the host kernel has
// vhost-vsock and this user may open it. It is only opened, never used: on some hosts
// (nested ones) /dev/vsock leads somewhere else entirely, and nothing here touches that.
func (b *Backend) vsockUsable() bool {
	if b.Vsock == VsockOff {
		return false
	}
	f, err := os.OpenFile(vhostVsockDev, os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// VsockMode says whether a QEMU VM gets a vsock device.
type VsockMode string

const (
	// VsockAuto adds vhost-vsock-pci where the host has vhost-vsock (the zero value).
	VsockAuto VsockMode = ""
	// VsockOff never adds it; the transport then runs over the user-mode network.
	VsockOff VsockMode = "off"
)

// newCID picks a guest context ID for one launch: IDs are host-wide, so a fixed one would
// collide between machines (and Skiff homes); QEMU refuses a taken one and launch retries.
func newCID() uint32 {
	var b [4]byte
	rand.Read(b[:])
	// 0-2 are reserved (hypervisor, local, host), and the top value is "any".
	return 3 + binary.BigEndian.Uint32(b[:])%(1<<31)
}

func vsockArgs(cid uint32) []string {
	if cid == 0 {
		return nil
	}
	return []string{"-device", "vhost-vsock-pci,guest-cid=" + strconv.FormatUint(uint64(cid), 10)}
}

// vsockVM is a QEMU VM with a vsock device: the host reaches the guest agent's transport
// over it instead of the user-mode network (vmm.GuestDialer).
type vsockVM struct {
	*VM
}

// DialGuest implements vmm.GuestDialer.
func (v vsockVM) DialGuest(ctx context.Context, port uint32) (net.Conn, error) {
	c, err := transport.DialVsock(ctx, v.cid, port)
	if err != nil {
		return nil, fmt.Errorf("qemu: vsock %d:%d: %w", v.cid, port, err)
	}
	return c, nil
}

// Describe implements vmm.Describer, adding the medium.
func (v vsockVM) Describe() map[string]string {
	d := v.VM.Describe()
	d["vsockCID"] = strconv.FormatUint(uint64(v.cid), 10)
	return d
}

// handle is what Start and Restore return: the VM, as a GuestDialer when it has vsock.
func (v *VM) handle() vmm.VM {
	if v.cid != 0 {
		return vsockVM{v}
	}
	return v
}

var _ vmm.GuestDialer = vsockVM{}
