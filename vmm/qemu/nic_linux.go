package qemu

import (
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// datagramPair is a connected pair of datagram sockets: the user-mode network's end and
// the one QEMU inherits. The buffers hold a burst of large frames (MTU 65520), as vz's do.
func datagramPair() (host net.Conn, guest *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	for _, fd := range fds {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}
	hf := os.NewFile(uintptr(fds[0]), "net-host")
	defer hf.Close()
	if host, err = net.FileConn(hf); err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	return host, os.NewFile(uintptr(fds[1]), "net-guest"), nil
}
