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

// DialVsock opens a stream to port on the vsock peer cid (HostCID for the host). vsock's
// connect has no context of its own: a context that ends first abandons it.
func DialVsock(ctx context.Context, cid, port uint32) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := vsock.Dial(cid, port, nil)
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("vsock %d:%d: %w", cid, port, r.err)
		}
		return r.c, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, ctx.Err()
	}
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
