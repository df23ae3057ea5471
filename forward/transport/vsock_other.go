//go:build !linux

package transport

import (
	"context"
	"errors"
	"net"
)

// errNoVsock: AF_VSOCK is Linux's; other hosts reach their VMs through the hypervisor's
// own API (vz's socket device, hvsock).
var errNoVsock = errors.New("AF_VSOCK sockets exist on Linux only")

// ListenVsock fails outside Linux.
func ListenVsock(port uint32) (net.Listener, error) { return nil, errNoVsock }

// DialVsock fails outside Linux.
func DialVsock(ctx context.Context, cid, port uint32) (net.Conn, error) { return nil, errNoVsock }

// VsockDialer reaches a transport server on vsock, for Client; outside Linux it fails.
func VsockDialer(cid, port uint32) RawDialer {
	return func(ctx context.Context) (net.Conn, error) { return DialVsock(ctx, cid, port) }
}
