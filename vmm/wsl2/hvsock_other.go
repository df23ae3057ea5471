//go:build !windows

package wsl2

import (
	"context"
	"errors"
	"net"
)

var errNotWindows = errors.New("wsl2: hvsock exists only on Windows")

type noHvsock struct{}

func newHvsock() Hvsock { return noHvsock{} }

func (noHvsock) VMIDs() ([]string, error) { return nil, errNotWindows }
func (noHvsock) Dial(context.Context, string, uint32) (net.Conn, error) {
	return nil, errNotWindows
}
func (noHvsock) Listen(uint32) (net.Listener, error) { return nil, errNotWindows }
