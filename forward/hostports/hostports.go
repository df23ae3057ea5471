// Package hostports mirrors the guest's listening sockets on the host: each guest listener
// gets a host listener on the same port, bound to 127.0.0.1 unless the user chose another
// address, and every accepted connection becomes a transport stream to the guest.
package hostports

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/skiff-dev/skiff/forward"
	"github.com/skiff-dev/skiff/forward/transport"
)

// Manager keeps the host listeners in step with the guest's. It has two sources: the
// guest's socket tables (every listener, containers or not) and the engine's published
// ports (Published, which know the address asked for in the publish spec and the
// container to dial). Where both name a port, the engine's view wins.
type Manager struct {
	Guest    transport.Dialer
	BindAddr string // default 127.0.0.1
	Logf     func(string, ...any)
	// OnChange is called after each reconcile, for the events stream.
	OnChange func([]forward.Forward)

	mu        sync.Mutex
	active    map[string]*forwarder
	listeners []forward.Listener
	published []Published
}

// Published is a port that the engine says a container publishes.
type Published struct {
	Proto    string // tcp or udp
	HostIP   string // the address in the publish spec; "" when the spec named none
	HostPort int
	// Target is the guest address to dial: the container's own IP and port, which skips
	// the engine's userland proxy in the guest.
	Target string
}

// want is one host port to serve and where its streams go.
type want struct {
	proto  string
	port   int
	bind   string // host address
	target string // what the guest agent dials
	guest  string // where the guest end listens, for inspect
}

func (w want) key() string { return fmt.Sprintf("%s/%d", w.proto, w.port) }

type forwarder struct {
	w     want
	host  string
	err   error
	close func()
}

func (m *Manager) bind() string {
	if m.BindAddr == "" {
		return "127.0.0.1"
	}
	return m.BindAddr
}

// hostBind picks the host address for a publish spec's address: a wildcard or loopback
// address asked for explicitly is honoured; none, or a guest-side address the host
// cannot bind, gets the default.
func (m *Manager) hostBind(requested string) string {
	ip := net.ParseIP(requested)
	if ip != nil && (ip.IsUnspecified() || ip.IsLoopback()) {
		return ip.String()
	}
	return m.bind()
}

// Update replaces the guest's socket-table listeners and reconciles.
func (m *Manager) Update(ctx context.Context, ls []forward.Listener) {
	m.mu.Lock()
	m.listeners = ls
	m.mu.Unlock()
	m.reconcile(ctx)
}

// UpdatePublished replaces the engine's published ports and reconciles.
func (m *Manager) UpdatePublished(ctx context.Context, ps []Published) {
	m.mu.Lock()
	m.published = ps
	m.mu.Unlock()
	m.reconcile(ctx)
}

// wants merges both sources, the engine's last so that it wins.
func (m *Manager) wants() map[string]want {
	ws := map[string]want{}
	for _, l := range m.listeners {
		w := want{proto: l.Proto, port: l.Port, bind: m.bind(), target: l.GuestTarget(), guest: net.JoinHostPort(l.IP, strconv.Itoa(l.Port))}
		ws[w.key()] = w
	}
	for _, p := range m.published {
		w := want{proto: p.Proto, port: p.HostPort, bind: m.hostBind(p.HostIP), target: p.Target, guest: p.Target}
		ws[w.key()] = w
	}
	return ws
}

func (m *Manager) reconcile(ctx context.Context) {
	m.mu.Lock()
	if m.active == nil {
		m.active = map[string]*forwarder{}
	}
	ws := m.wants()
	for k, f := range m.active {
		if w, ok := ws[k]; !ok || w != f.w {
			f.close()
			delete(m.active, k)
			m.Logf("ports: removed %s", f.host)
		}
	}
	for k, w := range ws {
		if _, ok := m.active[k]; ok {
			continue
		}
		f := m.open(ctx, w)
		m.active[k] = f
		if f.err != nil {
			m.Logf("ports: cannot forward %s %s: %v", w.proto, f.host, f.err)
		} else {
			m.Logf("ports: forwarding %s %s -> guest %s", w.proto, f.host, w.target)
		}
	}
	m.mu.Unlock()
	if m.OnChange != nil {
		m.OnChange(m.Status())
	}
}

// Status lists the forwards, including those whose host port could not be bound.
func (m *Manager) Status() []forward.Forward {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []forward.Forward{}
	for _, f := range m.active {
		fw := forward.Forward{Proto: f.w.proto, HostAddr: f.host, GuestAddr: f.w.guest}
		if f.err != nil {
			fw.Error = f.err.Error()
		}
		out = append(out, fw)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Proto+out[i].HostAddr < out[j].Proto+out[j].HostAddr })
	return out
}

// Close removes every forward.
func (m *Manager) Close() {
	m.mu.Lock()
	m.listeners, m.published = nil, nil
	m.mu.Unlock()
	m.reconcile(context.Background())
}

func (m *Manager) open(ctx context.Context, w want) *forwarder {
	f := &forwarder{w: w, host: net.JoinHostPort(w.bind, strconv.Itoa(w.port)), close: func() {}}
	switch w.proto {
	case "tcp":
		ln, err := net.Listen(family("tcp", w.bind), f.host)
		if err != nil {
			f.err = describeBindError(err)
			return f
		}
		f.close = func() { ln.Close() }
		go m.serveTCP(ctx, ln, w)
	case "udp":
		pc, err := net.ListenPacket(family("udp", w.bind), f.host)
		if err != nil {
			f.err = describeBindError(err)
			return f
		}
		f.close = func() { pc.Close() }
		go m.serveUDP(ctx, pc, w)
	default:
		f.err = fmt.Errorf("unknown protocol %q", w.proto)
	}
	return f
}

// family pins the address family of a host listener, so that 0.0.0.0 means IPv4 only (Go
// would otherwise listen on [::], dual-stack) and :: means IPv6, as in the publish spec.
func family(proto, bind string) string {
	if ip := net.ParseIP(bind); ip != nil && ip.To4() == nil {
		return proto + "6"
	}
	return proto + "4"
}

func describeBindError(err error) error {
	if errors.Is(err, errAddrInUse) {
		return fmt.Errorf("host port already in use by another program: %w", err)
	}
	return err
}

func (m *Manager) serveTCP(ctx context.Context, ln net.Listener, w want) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			g, err := m.Guest.Dial(ctx, forward.PrefixTCP+w.target)
			if err != nil && ctx.Err() == nil {
				// One retry: a burst of new connections can time out a handshake.
				g, err = m.Guest.Dial(ctx, forward.PrefixTCP+w.target)
			}
			if err != nil {
				m.Logf("ports: %s: %v", w.key(), err)
				c.Close()
				return
			}
			transport.Splice(c, g)
		}()
	}
}

// udpIdle is how long a UDP flow lives without traffic before its stream is closed.
const udpIdle = 2 * time.Minute

// serveUDP gives each host client address its own stream, so replies find their way back.
func (m *Manager) serveUDP(ctx context.Context, pc net.PacketConn, w want) {
	var mu sync.Mutex
	flows := map[string]net.Conn{}
	buf := make([]byte, 65535)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			mu.Lock()
			for _, c := range flows {
				c.Close()
			}
			mu.Unlock()
			return
		}
		mu.Lock()
		g, ok := flows[addr.String()]
		mu.Unlock()
		if !ok {
			g, err = m.Guest.Dial(ctx, forward.PrefixUDP+w.target)
			if err != nil {
				m.Logf("ports: %s: %v", w.key(), err)
				continue
			}
			mu.Lock()
			flows[addr.String()] = g
			mu.Unlock()
			go func(g net.Conn, addr net.Addr) {
				defer func() {
					mu.Lock()
					delete(flows, addr.String())
					mu.Unlock()
					g.Close()
				}()
				rb := make([]byte, 65535)
				for {
					g.SetReadDeadline(time.Now().Add(udpIdle))
					n, err := forward.ReadDatagram(g, rb)
					if err != nil {
						return
					}
					pc.WriteTo(rb[:n], addr)
				}
			}(g, addr)
		}
		forward.WriteDatagram(g, buf[:n])
	}
}
