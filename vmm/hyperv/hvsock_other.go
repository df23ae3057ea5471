//go:build !windows

package hyperv

import (
	"context"
	"errors"
	"io"
	"net"
)

var errNotWindows = errors.New("hyperv: hvsock exists only on Windows")

type noHvsock struct{}

func newHvsock() Hvsock { return noHvsock{} }

func (noHvsock) Dial(context.Context, string, uint32) (net.Conn, error) { return nil, errNotWindows }
func (noHvsock) Listen(string, uint32) (net.Listener, error)            { return nil, errNotWindows }
func (noHvsock) OpenPipe(context.Context, string) (io.ReadCloser, error) {
	return nil, errNotWindows
}
