//go:build !linux

package guest

import (
	"errors"
	"net"
)

// handOver is Linux's (the guest agent runs nowhere else).
func handOver(string, net.Conn) error { return errors.ErrUnsupported }

func engineAbsent(error) bool { return true }
