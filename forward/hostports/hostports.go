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
	"github.com/skiff-dev/skiff/machine/agentapi"
)

// Manager keeps the host listeners in step with the guest's.
type Manager struct {
	Guest    transport.Dialer
	BindAddr string // default 127.0.0.1
	Logf     func(string, ...any)
	// OnChange is called after each reconcile, for the events stream.
	OnChange func([]agentapi.Forward)

	mu     sync.Mutex
	active map[string]*forwarder
}

type forwarder struct {
	l      forward.Listener
	host   string
	err    error
	close  func()
	closed chan struct{}
}

func (m *Manager) bind() string {
	if m.BindAddr == "" {
		return "127.0.0.1"
	}
	return m.BindAddr
}

// Update reconciles the host listeners with the guest's current set.
func (m *Manager) Update(ctx context.Context, ls []forward.Listener) {
	m.mu.Lock()
	if m.active == nil {
		m.active = map[string]*forwarder{}
	}
	want := map[string]forward.Listener{}
	for _, l := range ls {
		want[l.Key()] = l
	}
	for k, f := range m.active {
		if nl, ok := want[k]; !ok || nl != f.l {
			f.close()
			delete(m.active, k)
			m.Logf("ports: removed %s", f.host)
		}
	}
	for k, l := range want {
		if _, ok := m.active[k]; ok {
			continue
		}
		f := m.open(ctx, l)
		m.active[k] = f
		if f.err != nil {
			m.Logf("ports: cannot forward %s %s: %v", l.Proto, f.host, f.err)
		} else {
			m.Logf("ports: forwarding %s %s -> guest %s", l.Proto, f.host, l.GuestTarget())
		}
	}
	m.mu.Unlock()
	if m.OnChange != nil {
		m.OnChange(m.Status())
	}
}

// Status lists the forwards, including those whose host port could not be bound.
func (m *Manager) Status() []agentapi.Forward {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []agentapi.Forward{}
	for _, f := range m.active {
		fw := agentapi.Forward{Proto: f.l.Proto, HostAddr: f.host, GuestAddr: net.JoinHostPort(f.l.IP, strconv.Itoa(f.l.Port))}
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
	m.Update(context.Background(), nil)
}

func (m *Manager) open(ctx context.Context, l forward.Listener) *forwarder {
	f := &forwarder{l: l, host: net.JoinHostPort(m.bind(), strconv.Itoa(l.Port)), closed: make(chan struct{}), close: func() {}}
	switch l.Proto {
	case "tcp":
		ln, err := net.Listen("tcp", f.host)
		if err != nil {
			f.err = describeBindError(err)
			return f
		}
		f.close = func() { ln.Close() }
		go m.serveTCP(ctx, ln, l)
	case "udp":
		pc, err := net.ListenPacket("udp", f.host)
		if err != nil {
			f.err = describeBindError(err)
			return f
		}
		f.close = func() { pc.Close() }
		go m.serveUDP(ctx, pc, l)
	default:
		f.err = fmt.Errorf("unknown protocol %q", l.Proto)
	}
	return f
}

func describeBindError(err error) error {
	if errors.Is(err, errAddrInUse) {
		return fmt.Errorf("host port already in use by another program: %w", err)
	}
	return err
}

func (m *Manager) serveTCP(ctx context.Context, ln net.Listener, l forward.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			g, err := m.Guest.Dial(ctx, forward.PrefixTCP+l.GuestTarget())
			if err != nil && ctx.Err() == nil {
				// One retry: a burst of new connections can time out a handshake.
				g, err = m.Guest.Dial(ctx, forward.PrefixTCP+l.GuestTarget())
			}
			if err != nil {
				m.Logf("ports: %s: %v", l.Key(), err)
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
func (m *Manager) serveUDP(ctx context.Context, pc net.PacketConn, l forward.Listener) {
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
			g, err = m.Guest.Dial(ctx, forward.PrefixUDP+l.GuestTarget())
			if err != nil {
				m.Logf("ports: %s: %v", l.Key(), err)
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
