// Package netgroup is the network a group of machines on one host shares: a second NIC in
// each member VM, all of them on one Ethernet switch that runs on the host and carries
// frames between unix sockets only. Nothing on it reaches a host address or leaves the
// host; each member keeps its own user-mode network (forward/usernet) for everything else.
//
// The switch admits a connection only after the member proved it is a machine of the
// group (Hello, checked by the caller's Admit) and then accepts from it only frames sent
// from the MAC leased to that machine, so one member cannot pose as another.
package netgroup

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
)

// The group network's addresses. Every group has the same subnet: groups are separate
// switches, so equal addresses never meet. 198.18.0.0/15 is reserved for benchmarks and
// never routed, and stays clear of Docker's bridge pools (172.17/16.., 192.168/16) and
// Swarm's overlay pool (10/8).
const (
	Subnet = "198.19.100.0/24"
	// MTU leaves VXLAN (Swarm's overlay) room inside the user-mode network's large frames
	// while keeping every frame one trip through the emulator.
	MTU = 9000
	// Domain is where members' names resolve (NAME.skiff.internal).
	Domain = "skiff.internal"
	// maxHello bounds the hello a connection opens with.
	maxHello = 4096
	// maxFrame bounds a frame on the wire (QEMU's stream netdev sends at most 64 KiB).
	maxFrame = 1 << 16
)

// Lease is a member's address on the group network, kept in its spec.
type Lease struct {
	Address string // e.g. 198.19.100.2
	MAC     string
}

// ErrFull says the group has no address left.
var ErrFull = errors.New("the network group has no free address left (253 machines)")

// Allocate picks the lowest address of the subnet no other member holds, and the MAC
// derived from it (unique in the group as the address is).
func Allocate(used []string) (Lease, error) {
	taken := map[netip.Addr]bool{}
	for _, u := range used {
		if a, err := netip.ParseAddr(u); err == nil {
			taken[a] = true
		}
	}
	p := netip.MustParsePrefix(Subnet)
	// .1 stays free (a gateway, were one ever needed); .255 is broadcast.
	for a := p.Addr().Next().Next(); p.Contains(a); a = a.Next() {
		b := a.As4()
		if b[3] == 255 {
			break
		}
		if !taken[a] {
			return Lease{Address: a.String(), MAC: fmt.Sprintf("5a:94:ef:%02x:%02x:%02x", b[1], b[2], b[3])}, nil
		}
	}
	return Lease{}, ErrFull
}

// Hello opens every connection to the switch: who the member is and the MAC it sends
// from, with Proof = ProofFor(machine's secret, group, MAC).
type Hello struct {
	Machine string `json:"machine"`
	MAC     string `json:"mac"`
	Proof   []byte `json:"proof"`
}

// ProofFor proves a member knows its machine's secret without sending it.
func ProofFor(secret []byte, group, mac string) []byte {
	h := hmac.New(sha256.New, secret)
	fmt.Fprintf(h, "skiff-netgroup\x00%s\x00%s", group, mac)
	return h.Sum(nil)
}

// CheckProof compares a hello's proof in constant time.
func CheckProof(secret []byte, group string, h Hello) bool {
	return hmac.Equal(ProofFor(secret, group, h.MAC), h.Proof)
}

type reply struct {
	Error string `json:"error,omitempty"`
}

// writeMsg and readMsg carry the hello and its reply: JSON with a 4-byte length, the
// framing the frames that follow use too.
func writeMsg(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeFrame(w, b)
}

func readMsg(r io.Reader, v any) error {
	b, err := readFrame(r, maxHello)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// writeFrame writes one length-prefixed frame in a single write, so that concurrent
// writers holding the same lock never interleave.
func writeFrame(w io.Writer, f []byte) error {
	b := make([]byte, 4+len(f))
	binary.BigEndian.PutUint32(b, uint32(len(f)))
	copy(b[4:], f)
	_, err := w.Write(b)
	return err
}

func readFrame(r io.Reader, limit int) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > uint32(limit) {
		return nil, fmt.Errorf("netgroup: frame of %d bytes exceeds %d", n, limit)
	}
	b := make([]byte, n)
	_, err := io.ReadFull(r, b)
	return b, err
}

func parseMAC(s string) ([6]byte, error) {
	var m [6]byte
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return m, fmt.Errorf("netgroup: bad MAC %q", s)
	}
	copy(m[:], hw)
	return m, nil
}
