// Package usernet is the machine's user-mode network: gvisor-tap-vsock embedded in the host
// agent. The guest's traffic leaves through ordinary host sockets, so host VPNs and proxies
// apply to it as to any other program, and no root or TAP device is needed.
package usernet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"

	"github.com/containers/gvisor-tap-vsock/pkg/types"
	"github.com/containers/gvisor-tap-vsock/pkg/virtualnetwork"

	"github.com/skiff-dev/skiff/forward"
	"github.com/skiff-dev/skiff/forward/transport"
)

// The addresses of every machine's private network. Machines never share one: each host
// agent embeds its own stack, so equal addresses do not collide.
const (
	Subnet    = "192.168.127.0/24"
	GatewayIP = "192.168.127.1"
	GuestIP   = "192.168.127.2"
	// HostIP answers inside the VM for the host itself (host.docker.internal).
	HostIP     = "192.168.127.254"
	GuestMAC   = "5a:94:ef:e4:0c:ee"
	gatewayMAC = "5a:94:ef:e4:0c:dd"
	// MTU is large because every frame costs a trip through the emulator; fewer, bigger
	// frames are what makes throughput under TCG tolerable.
	MTU = 65520
)

// Network is one machine's virtual network.
type Network struct {
	vn     *virtualnetwork.VirtualNetwork
	secret []byte

	groupMu sync.Mutex
	// groupNames are the group names the zone answers, as last given: the zone API only
	// prepends records, so a name is posted again only when its address changed.
	groupNames map[string]string
}

// Options configure a Network.
type Options struct {
	// Secret is the machine's: a guest that opens its own stream to the network
	// (ServeGuestStream) must prove it. Without one such streams are refused.
	Secret []byte
	// NoHostLoopback cuts the VM off from the host's loopback services: HostIP
	// (host.docker.internal) no longer leads to the host's 127.0.0.1, nor answers at all.
	// The host's other addresses stay reachable as from any program on the host.
	NoHostLoopback bool
	// GroupHosts, when set, are the names of the machine's network group and their
	// addresses there, answered in the zone GroupDomain (NAME.skiff.internal).
	GroupHosts map[string]string
}

// GroupDomain is the zone the network group's names resolve in, from every member.
const GroupDomain = "skiff.internal."

// New builds the network: DHCP with a static lease for the guest, DNS through the host's
// resolver, and host.docker.internal / host.containers.internal pointing at the host.
func New(o Options) (*Network, error) {
	vn, err := virtualnetwork.New(configuration(o))
	if err != nil {
		return nil, fmt.Errorf("user-mode network: %w", err)
	}
	n := &Network{vn: vn, secret: o.Secret, groupNames: maps.Clone(o.GroupHosts)}
	if p := os.Getenv(ServicesEnv); p != "" {
		if err := n.serveServices(p); err != nil {
			return nil, err
		}
	}
	return n, nil
}

func configuration(o Options) *types.Configuration {
	hostRecord := []types.Record{{Name: "host", IP: net.ParseIP(HostIP)}, {Name: "gateway", IP: net.ParseIP(GatewayIP)}}
	cfg := &types.Configuration{
		MTU:               MTU,
		Subnet:            Subnet,
		GatewayIP:         GatewayIP,
		GatewayMacAddress: gatewayMAC,
		DNS: []types.Zone{
			{Name: "docker.internal.", Records: hostRecord},
			{Name: "containers.internal.", Records: hostRecord},
		},
		DHCPStaticLeases:  map[string]string{GuestIP: GuestMAC},
		NAT:               map[string]string{HostIP: "127.0.0.1"},
		GatewayVirtualIPs: []string{HostIP},
		Forwards:          map[string]string{},
		Protocol:          types.QemuProtocol,
	}
	if o.GroupHosts != nil {
		cfg.DNS = append(cfg.DNS, groupZone(o.GroupHosts))
	}
	if o.NoHostLoopback {
		// Without the translation a connection to HostIP would be dialled on the host as
		// is, to whatever that address means on the host's own networks; without the
		// virtual address nothing answers for it in the VM. The netstack itself drops
		// frames addressed to 127.0.0.0/8, so this was the only way to the host's loopback.
		delete(cfg.NAT, HostIP)
		cfg.GatewayVirtualIPs = slices.DeleteFunc(cfg.GatewayVirtualIPs, func(ip string) bool { return ip == HostIP })
	}
	return cfg
}

// ServeStream implements vmm.Network for QEMU's -netdev stream.
func (n *Network) ServeStream(ctx context.Context, conn net.Conn) error {
	return n.vn.AcceptQemu(ctx, conn)
}

// ServeDatagram implements vmm.Network for vz/vfkit unixgram sockets.
func (n *Network) ServeDatagram(ctx context.Context, conn net.Conn) error {
	return n.vn.AcceptVfkit(ctx, conn)
}

// ServeGuestStream implements vmm.Network for a guest's network helper dialing in over
// vsock or hvsock: the stream is served only once the guest proved the machine's secret.
func (n *Network) ServeGuestStream(ctx context.Context, conn net.Conn) error {
	if len(n.secret) == 0 {
		conn.Close()
		return errors.New("user-mode network: no machine secret to check the guest's stream against")
	}
	service, err := transport.Accept(conn, n.secret)
	if err == nil && service != forward.HostServiceNetwork {
		transport.Refuse(conn, "this port serves only the network")
		err = fmt.Errorf("guest asked for %q", service)
	}
	if err == nil {
		err = transport.Grant(conn)
	}
	if err != nil {
		conn.Close()
		return fmt.Errorf("user-mode network: guest stream: %w", err)
	}
	return n.ServeStream(ctx, conn)
}

// DialGuest opens a TCP connection to a guest port through the network stack, without any
// host port.
func (n *Network) DialGuest(ctx context.Context, port int) (net.Conn, error) {
	return n.vn.DialContextTCP(ctx, net.JoinHostPort(GuestIP, strconv.Itoa(port)))
}

// ListenGateway listens on the gateway address inside the network, for streams the guest
// opens towards the host. Nothing outside the VM can reach it.
func (n *Network) ListenGateway(port int) (net.Listener, error) {
	return n.vn.Listen("tcp", net.JoinHostPort(GatewayIP, strconv.Itoa(port)))
}

// BytesSent and BytesReceived report traffic for inspect and benchmarks.
func (n *Network) BytesSent() uint64     { return n.vn.BytesSent() }
func (n *Network) BytesReceived() uint64 { return n.vn.BytesReceived() }

func groupZone(hosts map[string]string) types.Zone {
	z := types.Zone{Name: GroupDomain}
	for name, ip := range hosts {
		if a := net.ParseIP(ip); a != nil {
			z.Records = append(z.Records, types.Record{Name: name, IP: a})
		}
	}
	return z
}

// SetGroupHosts adds names to the network group's zone (machines that joined the group
// after this one started). A name given again with a new address takes it; one given with
// the address it has changes nothing. A name left out keeps answering: gvisor-tap-vsock's
// zone API can add records but not remove them.
func (n *Network) SetGroupHosts(hosts map[string]string) error {
	n.groupMu.Lock()
	defer n.groupMu.Unlock()
	changed := map[string]string{}
	for name, ip := range hosts {
		if n.groupNames[name] != ip {
			changed[name] = ip
		}
	}
	if len(changed) == 0 {
		return nil
	}
	b, err := json.Marshal(groupZone(changed))
	if err != nil {
		return err
	}
	// The zone API is gvisor-tap-vsock's own HTTP handler; served in-process, never on a socket.
	req, err := http.NewRequest(http.MethodPost, "/services/dns/add", bytes.NewReader(b))
	if err != nil {
		return err
	}
	rec := &recorder{header: http.Header{}}
	n.vn.ServicesMux().ServeHTTP(rec, req)
	if rec.code != 0 && rec.code != http.StatusOK {
		return fmt.Errorf("user-mode network: group names: %s", rec.body.String())
	}
	if n.groupNames == nil {
		n.groupNames = map[string]string{}
	}
	maps.Copy(n.groupNames, changed)
	return nil
}

// recorder is the least of an http.ResponseWriter, for the in-process zone call.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(code int)        { r.code = code }
