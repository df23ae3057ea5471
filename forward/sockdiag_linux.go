package forward

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// openSockDiag opens the netlink socket that diagListeners asks on; one serves a whole scan.
func openSockDiag() (int, error) {
	return unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
}

// diagListeners asks the kernel's socket diagnostics, on fd from openSockDiag, for one
// protocol and family's listeners. /proc/net/tcp walks the whole established-connection
// hash on every read; a dump filtered to LISTEN walks only the listening one, and the scan
// runs on every listen the kernel reports (ListenWatch), or several times a second where
// it cannot.
func diagListeners(fd int, proto string, family uint8) ([]Listener, error) {
	const (
		tcpListen = 10 // TCP_LISTEN
		udpClose  = 7  // an unconnected UDP socket reports TCP_CLOSE
	)
	ipproto, states := uint8(unix.IPPROTO_TCP), uint32(1<<tcpListen)
	if proto == "udp" {
		ipproto, states = unix.IPPROTO_UDP, 1<<udpClose
	}
	// nlmsghdr (16 bytes) + inet_diag_req_v2 (56 bytes), all zero but what is set here.
	req := make([]byte, 72)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:], 1)
	req[16], req[17] = family, ipproto
	binary.NativeEndian.PutUint32(req[20:], states)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	var out []Listener
	buf := make([]byte, 32<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, err
		}
		msgs, err := parseDiag(buf[:n], proto)
		out = append(out, msgs...)
		if errors.Is(err, errDiagDone) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

var errDiagDone = errors.New("done")

// parseDiag decodes one datagram of inet_diag_msg answers.
func parseDiag(b []byte, proto string) ([]Listener, error) {
	var out []Listener
	for len(b) >= unix.SizeofNlMsghdr {
		l := int(binary.NativeEndian.Uint32(b[0:]))
		typ := binary.NativeEndian.Uint16(b[4:])
		if l < unix.SizeofNlMsghdr || l > len(b) {
			return out, fmt.Errorf("sock_diag: bad message length %d", l)
		}
		body := b[unix.SizeofNlMsghdr:l]
		switch typ {
		case unix.NLMSG_DONE:
			return out, errDiagDone
		case unix.NLMSG_ERROR:
			if len(body) >= 4 {
				if e := int32(binary.NativeEndian.Uint32(body)); e != 0 {
					return out, fmt.Errorf("sock_diag: %w", unix.Errno(-e))
				}
			}
			return out, errDiagDone
		case unix.SOCK_DIAG_BY_FAMILY:
			// inet_diag_msg: family, state, timer, retrans, then the socket id: source
			// port and destination port (big endian), source and destination addresses.
			if len(body) < 72 {
				return out, fmt.Errorf("sock_diag: short answer")
			}
			family := body[0]
			port := int(binary.BigEndian.Uint16(body[4:]))
			dport := binary.BigEndian.Uint16(body[6:])
			ip := net.IP(append([]byte(nil), body[8:24]...))
			if family == unix.AF_INET {
				ip = ip[:4]
			}
			// A UDP socket with a peer is a connected client, not a server.
			if port != 0 && (proto == "tcp" || dport == 0) {
				out = append(out, Listener{Proto: proto, IP: ip.String(), Port: port})
			}
		}
		b = b[(l+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1):]
	}
	return out, nil
}

// scanTables returns the guest's listeners from socket diagnostics, or from the /proc
// tables where the kernel lacks them.
func scanTables() []Listener {
	fd, err := openSockDiag()
	if err != nil {
		return scanProcNet()
	}
	defer unix.Close(fd)
	var all []Listener
	for _, q := range []struct {
		proto  string
		family uint8
	}{{"tcp", unix.AF_INET}, {"tcp", unix.AF_INET6}, {"udp", unix.AF_INET}, {"udp", unix.AF_INET6}} {
		ls, err := diagListeners(fd, q.proto, q.family)
		if err != nil {
			return scanProcNet()
		}
		all = append(all, ls...)
	}
	return all
}
