package transport

import (
	"context"
	"fmt"
	"net"
	"os"

	"github.com/mdlayher/vsock"
	"golang.org/x/sys/unix"
)

// ListenVsock listens on port of every vsock transport the guest has (any local CID, so
// the loopback transport reaches it too). It fails when the kernel has no AF_VSOCK at all;
// with the family but no device (QEMU without vhost-vsock) it succeeds and never accepts.
func ListenVsock(port uint32) (net.Listener, error) {
	ln, err := vsock.ListenContextID(unix.VMADDR_CID_ANY, port, nil)
	if err != nil {
		return nil, fmt.Errorf("vsock port %d: %w", port, err)
	}
	return ln, nil
}

// DialVsock opens a stream to port on the vsock peer cid (HostCID for the host).
func DialVsock(ctx context.Context, cid, port uint32) (net.Conn, error) {
	c, err := DialContext(ctx, func() (net.Conn, error) { return vsock.Dial(cid, port, nil) })
	if err != nil && ctx.Err() == nil {
		return nil, fmt.Errorf("vsock %d:%d: %w", cid, port, err)
	}
	return c, err
}

// VsockDialer reaches a transport server on vsock, for transport.Client.
func VsockDialer(cid, port uint32) RawDialer {
	return func(ctx context.Context) (net.Conn, error) { return DialVsock(ctx, cid, port) }
}

// VsockDevice says whether the guest has a vsock device to its host: a virtio (QEMU, vz)
// device gives it a context ID of its own, and on Hyper-V (WSL2 included) hv_sock rides
// the VMBus, whose devices show under /sys/bus/vmbus. The loopback transport alone is not
// one.
func VsockDevice() bool {
	if cid, err := vsock.ContextID(); err == nil && cid > HostCID && cid != unix.VMADDR_CID_ANY {
		return true
	}
	ents, _ := os.ReadDir("/sys/bus/vmbus/devices")
	return len(ents) > 0
}
