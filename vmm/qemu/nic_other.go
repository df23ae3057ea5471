//go:build !linux

package qemu

import (
	"fmt"
	"net"
	"os"

	"github.com/skiff-dev/skiff/vmm"
)

// datagramPair: only Linux hosts stand in for vz with QEMU.
func datagramPair() (net.Conn, *os.File, error) {
	return nil, nil, fmt.Errorf("a datagram NIC (vz's devices) on QEMU outside Linux: %w", vmm.ErrNotSupported)
}
