package hyperv

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/Microsoft/go-winio"
	"github.com/Microsoft/go-winio/pkg/guid"
)

type winHvsock struct{}

func newHvsock() Hvsock { return winHvsock{} }

func addr(vmID string, port uint32) (*winio.HvsockAddr, error) {
	id, err := guid.FromString(vmID)
	if err != nil {
		return nil, fmt.Errorf("VM id %q: %w", vmID, err)
	}
	return &winio.HvsockAddr{VMID: id, ServiceID: winio.VsockServiceID(port)}, nil
}

func (winHvsock) Dial(ctx context.Context, vmID string, port uint32) (net.Conn, error) {
	a, err := addr(vmID, port)
	if err != nil {
		return nil, err
	}
	return winio.Dial(ctx, a)
}

// Listen accepts only from this VM: other VMs on the host cannot join its network.
func (winHvsock) Listen(vmID string, port uint32) (net.Listener, error) {
	a, err := addr(vmID, port)
	if err != nil {
		return nil, err
	}
	return winio.ListenHvsock(a)
}

func (winHvsock) OpenPipe(ctx context.Context, path string) (io.ReadCloser, error) {
	return winio.DialPipeContext(ctx, path)
}
