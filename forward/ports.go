// Package forward is the data plane between host and guest: the engine API socket,
// published ports, file shares and bind-mount path translation, all written once against
// the transport in forward/transport.
package forward

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Listener is a socket listening in the guest that the host should mirror.
type Listener struct {
	Proto string `json:"proto"` // tcp or udp
	IP    string `json:"ip"`    // guest bind address: 0.0.0.0, ::, 127.0.0.1 ...
	Port  int    `json:"port"`
}

// Key identifies the host end: one host port per protocol, whatever guest addresses share it.
func (l Listener) Key() string { return fmt.Sprintf("%s/%d", l.Proto, l.Port) }

// GuestTarget is the address the guest agent dials to reach the listener.
func (l Listener) GuestTarget() string {
	ip := net.ParseIP(l.IP)
	switch {
	case ip == nil || ip.IsUnspecified():
		if ip != nil && ip.To4() == nil {
			return net.JoinHostPort("::1", strconv.Itoa(l.Port))
		}
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(l.Port))
	default:
		return net.JoinHostPort(l.IP, strconv.Itoa(l.Port))
	}
}

// ProcNetFiles are the socket tables the guest watches, in a fixed order.
var ProcNetFiles = []struct{ Path, Proto string }{
	{"/proc/net/tcp", "tcp"}, {"/proc/net/tcp6", "tcp"}, {"/proc/net/udp", "udp"}, {"/proc/net/udp6", "udp"},
}

// ParseProcNet reads one /proc/net/{tcp,udp}[6] table and returns its listening sockets.
// TCP sockets count in LISTEN (0A); UDP sockets when unconnected (07) with a local port.
func ParseProcNet(r io.Reader, proto string) ([]Listener, error) {
	var out []Listener
	sc := bufio.NewScanner(r)
	first := true
	for sc.Scan() {
		if first {
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		state := f[3]
		if (proto == "tcp" && state != "0A") || (proto == "udp" && state != "07") {
			continue
		}
		// udp sockets with a remote address are connected clients, not servers.
		if proto == "udp" && !strings.HasSuffix(f[2], ":0000") {
			continue
		}
		ip, port, err := parseHexAddr(f[1])
		if err != nil {
			return nil, err
		}
		if port == 0 {
			continue
		}
		out = append(out, Listener{Proto: proto, IP: ip.String(), Port: port})
	}
	return out, sc.Err()
}

func parseHexAddr(s string) (net.IP, int, error) {
	h, p, ok := strings.Cut(s, ":")
	if !ok {
		return nil, 0, fmt.Errorf("bad address %q", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return nil, 0, fmt.Errorf("bad port in %q", s)
	}
	b, err := hex.DecodeString(h)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return nil, 0, fmt.Errorf("bad ip in %q", s)
	}
	// The kernel prints each 32-bit word in host (little-endian) order.
	for i := 0; i < len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	return net.IP(b), int(port), nil
}

// Forwardable decides which guest listeners the host mirrors: those reachable from
// outside a container namespace's bridge (wildcard, loopback or the guest's own address),
// minus the guest's own services.
func Forwardable(l Listener, guestIP string, exclude map[int]bool) bool {
	if exclude[l.Port] {
		return false
	}
	ip := net.ParseIP(l.IP)
	return ip != nil && (ip.IsUnspecified() || ip.IsLoopback() || ip.String() == guestIP)
}

// rank orders the guest addresses one port may be bound on; the lowest is forwarded. An
// IPv4 wildcard comes first: it is reachable at 127.0.0.1 whatever the guest's IPv6 state.
// The order must be total, or the chosen listener would flip between scans and the host
// port would be torn down and rebound for nothing.
func rank(l Listener) int {
	ip := net.ParseIP(l.IP)
	v4 := ip.To4() != nil
	switch {
	case ip.IsUnspecified() && v4:
		return 0
	case ip.IsUnspecified():
		return 1
	case ip.IsLoopback() && v4:
		return 3
	case ip.IsLoopback():
		return 4
	}
	return 2
}

// Better reports whether a should be forwarded rather than b for the same port.
func Better(a, b Listener) bool {
	if ra, rb := rank(a), rank(b); ra != rb {
		return ra < rb
	}
	return a.IP < b.IP
}

// ScanListeners reads every socket table and returns the forwardable listeners, one per
// protocol and port, sorted.
func ScanListeners(guestIP string, exclude map[int]bool) []Listener {
	best := map[string]Listener{}
	for _, l := range scanTables() {
		if !Forwardable(l, guestIP, exclude) {
			continue
		}
		if cur, ok := best[l.Key()]; !ok || Better(l, cur) {
			best[l.Key()] = l
		}
	}
	out := make([]Listener, 0, len(best))
	for _, l := range best {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// scanProcNet reads every listener from the /proc socket tables.
func scanProcNet() []Listener {
	var all []Listener
	for _, t := range ProcNetFiles {
		f, err := os.Open(t.Path)
		if err != nil {
			continue
		}
		ls, _ := ParseProcNet(f, t.Proto)
		f.Close()
		all = append(all, ls...)
	}
	return all
}

// Forward is one published port as the host sees it: where its host end is bound, the
// guest listener it reaches, and why it could not be bound.
type Forward struct {
	Proto     string `json:"proto"`
	HostAddr  string `json:"hostAddr"`  // e.g. 127.0.0.1:8080
	GuestAddr string `json:"guestAddr"` // where the guest listener is bound
	Error     string `json:"error,omitempty"`
}
