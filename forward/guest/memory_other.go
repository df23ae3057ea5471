//go:build !linux

package guest

import (
	"context"
	"net"
)

// memory is Linux's (the guest agent runs nowhere else): the host hears nothing.
func (a *Agent) memory(_ context.Context, _ string, conn net.Conn) { conn.Close() }
