package transport

import (
	"context"
	"net"
)

// vsock addresses a guest dials (the host gives each guest its own context ID).
const (
	HostCID  uint32 = 2 // the host, on every transport (virtio, vz, hv_sock)
	LocalCID uint32 = 1 // the guest itself, over vsock_loopback
)

// DialContext runs a dial that takes no context (vsock's connect, vz's socket device)
// until ctx ends; a connection it makes after that is closed.
func DialContext(ctx context.Context, dial func() (net.Conn, error)) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := dial()
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		return r.c, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, ctx.Err()
	}
}
