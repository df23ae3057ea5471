package usernet

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// guestStack is a stand-in for the VM: a netstack at GuestIP whose Ethernet frames go to
// the network over QEMU's stream framing (a 4-byte big-endian length, then the frame).
func guestStack(t *testing.T, n *Network) *stack.Stack {
	ctx, cancel := context.WithCancel(context.Background())
	hostEnd, guestEnd := net.Pipe()
	go n.ServeStream(ctx, hostEnd)
	mac, _ := net.ParseMAC(GuestMAC)
	link := channel.New(256, 1500, tcpip.LinkAddress(mac))
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	t.Cleanup(func() { cancel(); guestEnd.Close(); s.Close() })
	if err := s.CreateNIC(1, ethernet.New(link)); err != nil {
		t.Fatal(err)
	}
	addr := tcpip.AddrFrom4Slice(net.ParseIP(GuestIP).To4())
	if err := s.AddProtocolAddress(1, tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{Address: addr, PrefixLen: 24}}, stack.AddressProperties{}); err != nil {
		t.Fatal(err)
	}
	subnet := tcpip.AddressWithPrefix{Address: addr, PrefixLen: 24}.Subnet()
	s.SetRouteTable([]tcpip.Route{{Destination: subnet, NIC: 1}})
	go func() { // guest -> network
		for {
			pkt := link.ReadContext(ctx)
			if pkt == nil {
				return
			}
			frame := pkt.ToView().AsSlice()
			pkt.DecRef()
			msg := binary.BigEndian.AppendUint32(nil, uint32(len(frame)))
			if _, err := guestEnd.Write(append(msg, frame...)); err != nil {
				return
			}
		}
	}()
	go func() { // network -> guest
		var h [4]byte
		for {
			if _, err := io.ReadFull(guestEnd, h[:]); err != nil {
				return
			}
			frame := make([]byte, binary.BigEndian.Uint32(h[:]))
			if _, err := io.ReadFull(guestEnd, frame); err != nil {
				return
			}
			link.InjectInbound(0, stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)}))
		}
	}()
	return s
}

// dialHostLoopback reports whether the guest reaches a host listener on 127.0.0.1 through
// HostIP, as a container does through host.docker.internal.
func dialHostLoopback(t *testing.T, o Options) bool {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "host")
			c.Close()
		}
	}()
	n, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	s := guestStack(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	port := ln.Addr().(*net.TCPAddr).Port
	to := tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4Slice(net.ParseIP(HostIP).To4()), Port: uint16(port)}
	c, err := gonet.DialContextTCP(ctx, s, to, ipv4.ProtocolNumber)
	if err != nil {
		t.Logf("dial %s:%s from the guest: %v", HostIP, strconv.Itoa(port), err)
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(c)
	return string(b) == "host"
}

func TestHostLoopbackThroughHostIP(t *testing.T) {
	if !dialHostLoopback(t, Options{}) {
		t.Fatal("the host's loopback is not reachable at HostIP by default")
	}
}

func TestNoHostLoopback(t *testing.T) {
	if dialHostLoopback(t, Options{NoHostLoopback: true}) {
		t.Fatal("NoHostLoopback: the host's loopback still answers at HostIP")
	}
}

type zoneList []struct {
	Name    string
	Records []struct {
		Name string
		IP   net.IP
	}
}

// listZones is the network's DNS zones as gvisor-tap-vsock lists them.
func listZones(t *testing.T, n *Network) zoneList {
	req, _ := http.NewRequest(http.MethodGet, "/services/dns/all", nil)
	rec := &recorder{header: http.Header{}}
	n.vn.ServicesMux().ServeHTTP(rec, req)
	var zs zoneList
	if err := json.Unmarshal(rec.body.Bytes(), &zs); err != nil {
		t.Fatalf("zones: %v: %s", err, rec.body.String())
	}
	return zs
}

// zones are the DNS zones the network answers: each name's address.
func zones(t *testing.T, n *Network) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, z := range listZones(t, n) {
		out[z.Name] = map[string]string{}
		for i := len(z.Records) - 1; i >= 0; i-- { // the first record of a name wins
			out[z.Name][z.Records[i].Name] = z.Records[i].IP.String()
		}
	}
	return out
}

func TestGroupHosts(t *testing.T) {
	n, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := zones(t, n)[GroupDomain]; ok {
		t.Fatal("a machine in no group answers the group's zone")
	}
	n, err = New(Options{GroupHosts: map[string]string{"a": "198.19.100.2", "b": "198.19.100.3"}})
	if err != nil {
		t.Fatal(err)
	}
	if z := zones(t, n)[GroupDomain]; z["a"] != "198.19.100.2" || z["b"] != "198.19.100.3" {
		t.Fatalf("group zone = %v", z)
	}
	if err := n.SetGroupHosts(map[string]string{"c": "198.19.100.4", "b": "198.19.100.9"}); err != nil {
		t.Fatal(err)
	}
	if z := zones(t, n)[GroupDomain]; z["a"] != "198.19.100.2" || z["b"] != "198.19.100.9" || z["c"] != "198.19.100.4" {
		t.Fatalf("group zone after a member joined and one moved = %v", z)
	}
	// The agent gives the whole group again on every change of the machines' folder: the
	// zone must not grow with each call.
	count := func() (n2 int) {
		for _, z := range listZones(t, n) {
			if z.Name == GroupDomain {
				n2 += len(z.Records)
			}
		}
		return n2
	}
	before := count()
	for range 50 {
		if err := n.SetGroupHosts(map[string]string{"a": "198.19.100.2", "b": "198.19.100.9", "c": "198.19.100.4"}); err != nil {
			t.Fatal(err)
		}
	}
	if after := count(); after != before {
		t.Fatalf("the group zone grew from %d to %d records when given the same names again", before, after)
	}
}
