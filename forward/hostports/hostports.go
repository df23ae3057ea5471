// Package hostports mirrors the guest's listening sockets on the host: each guest listener
// gets a host listener on the same port, bound to 127.0.0.1 unless the user chose another
// address, and every accepted connection becomes a transport stream to the guest.
//
// Any process in the VM's network namespace can open a listener, so what is mirrored is
// bounded: at most MaxForwards host ports, never a listener bound to the guest's own
// loopback (only the engine may ask for those, by publishing them), and never a host port
// that something on the host already serves.
package hostports

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

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
	// MaxForwards bounds the host ports one machine holds; 0 means DefaultMaxForwards.
	// Forwards beyond it are listed by Status with ErrTooManyForwards.
	MaxForwards int
	// MaxUDPFlows bounds the host clients one UDP forward serves at once; 0 means
	// DefaultMaxUDPFlows. A new client beyond it replaces the least recently active one.
	MaxUDPFlows int

	mu        sync.Mutex
	active    map[string]*forwarder
	listeners []forward.Listener
	published []Published
	sources   map[string][]Published // UpdateSource's, by source
	// atLimit and loopback remember what was last logged, so that a refusal that stands
	// is logged once, not on every reconcile.
	atLimit  bool
	loopback map[string]bool
}

// Defaults for the Manager's bounds.
const (
	DefaultMaxForwards = 256
	DefaultMaxUDPFlows = 256
)

var (
	// ErrPortInUse is why a forward is not bound: a program on the host already serves
	// the port, and its clients must keep reaching it, not the VM.
	ErrPortInUse = errors.New("in use on the host")
	// ErrTooManyForwards is why a forward is not bound: the machine holds MaxForwards.
	ErrTooManyForwards = errors.New("limit of forwards per machine reached")
)

// Published is a port that the engine says a container publishes.
type Published struct {
	Proto    string `json:"proto"`            // tcp or udp
	HostIP   string `json:"hostIP,omitempty"` // the address in the publish spec; "" when the spec named none
	HostPort int    `json:"hostPort"`
	// Target is the guest address to dial: the container's own IP and port, which skips
	// the engine's userland proxy in the guest.
	Target string `json:"target"`
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

// Sources is everything a Manager forwards from. A suspend keeps it with the saved VM so
// that a warm start binds the same host ports at once: the restored guest serves exactly
// what it served then, and the watches that follow correct anything that differs.
type Sources struct {
	Listeners []forward.Listener     `json:"listeners,omitempty"`
	Published []Published            `json:"published,omitempty"`
	Agent     map[string][]Published `json:"agent,omitempty"` // UpdateSource's
}

// Sources returns what the manager forwards from now.
func (m *Manager) Sources() Sources {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Sources{Listeners: slices.Clone(m.listeners), Published: slices.Clone(m.published), Agent: maps.Clone(m.sources)}
}

// Restore replaces every source with s and reconciles.
func (m *Manager) Restore(ctx context.Context, s Sources) {
	m.mu.Lock()
	m.listeners, m.published, m.sources = s.Listeners, s.Published, s.Agent
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

// UpdateSource replaces the ports one of the agent's own sources asks for (Kubernetes'
// services) and reconciles. They are bound like the engine's, which win a port both name.
func (m *Manager) UpdateSource(ctx context.Context, source string, ps []Published) {
	m.mu.Lock()
	if m.sources == nil {
		m.sources = map[string][]Published{}
	}
	m.sources[source] = ps
	m.mu.Unlock()
	m.reconcile(ctx)
}

// wants merges the sources, the engine's last so that it wins, and returns the keys in
// the order slots are given under the limit: the engine's ports (asked for by the user)
// first, then the socket table's, each by key.
func (m *Manager) wants() (map[string]want, []string) {
	ws := map[string]want{}
	loopback := map[string]bool{}
	for _, l := range m.listeners {
		guest := net.JoinHostPort(l.IP, strconv.Itoa(l.Port))
		// Checked here, not only in the guest's scan: a process that bound the guest's
		// loopback meant nobody outside the VM to reach it.
		if ip := net.ParseIP(l.IP); ip == nil || ip.IsLoopback() {
			loopback[l.Proto+" "+guest] = true
			continue
		}
		w := want{proto: l.Proto, port: l.Port, bind: m.bind(), target: l.GuestTarget(), guest: guest}
		ws[w.key()] = w
	}
	engine := map[string]bool{}
	for _, src := range slices.Sorted(maps.Keys(m.sources)) {
		for _, p := range m.sources[src] {
			w := want{proto: p.Proto, port: p.HostPort, bind: m.hostBind(p.HostIP), target: p.Target, guest: p.Target}
			engine[w.key()] = true
			ws[w.key()] = w
		}
	}
	for _, p := range m.published {
		w := want{proto: p.Proto, port: p.HostPort, bind: m.hostBind(p.HostIP), target: p.Target, guest: p.Target}
		engine[w.key()] = true
		ws[w.key()] = w
	}
	for k := range loopback {
		if !m.loopback[k] {
			m.Logf("ports: not forwarding guest listener %s: bound to the guest's loopback", k)
		}
	}
	m.loopback = loopback
	order := slices.SortedFunc(maps.Keys(ws), func(a, b string) int {
		if engine[a] != engine[b] {
			if engine[a] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	return ws, order
}

func (m *Manager) maxForwards() int {
	if m.MaxForwards <= 0 {
		return DefaultMaxForwards
	}
	return m.MaxForwards
}

func (m *Manager) reconcile(ctx context.Context) {
	m.mu.Lock()
	if m.active == nil {
		m.active = map[string]*forwarder{}
	}
	ws, order := m.wants()
	bound := 0
	for k, f := range m.active {
		if w, ok := ws[k]; !ok || w != f.w {
			f.close()
			delete(m.active, k)
			if f.err == nil {
				m.Logf("ports: removed %s", f.host)
			}
		} else if f.err == nil {
			bound++
		}
	}
	// Forwards refused before are tried again: the host program may have let the port go,
	// or a slot under the limit may have come free.
	var overLimit []string
	for _, k := range order {
		w := ws[k]
		old, ok := m.active[k]
		if ok && old.err == nil {
			continue
		}
		var f *forwarder
		if bound >= m.maxForwards() {
			f = &forwarder{w: w, host: hostAddr(w), err: fmt.Errorf("%w (%d)", ErrTooManyForwards, m.maxForwards()), close: func() {}}
			overLimit = append(overLimit, w.proto+" "+f.host)
		} else if f = m.open(ctx, w); f.err == nil {
			bound++
			m.Logf("ports: forwarding %s %s -> guest %s", w.proto, f.host, w.target)
		} else if !ok || old.err.Error() != f.err.Error() {
			m.Logf("ports: not forwarding %s %s: %v", w.proto, f.host, f.err)
		}
		m.active[k] = f
	}
	if len(overLimit) > 0 && !m.atLimit {
		m.Logf("ports: not forwarding %s: limit of %d forwards per machine reached", summary(overLimit, 5), m.maxForwards())
	}
	m.atLimit = len(overLimit) > 0
	m.mu.Unlock()
	if m.OnChange != nil {
		m.OnChange(m.Status())
	}
}

// summary names the first n items of list and how many more there are.
func summary(list []string, n int) string {
	if len(list) <= n {
		return strings.Join(list, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(list[:n], ", "), len(list)-n)
}

func hostAddr(w want) string { return net.JoinHostPort(w.bind, strconv.Itoa(w.port)) }

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
	m.listeners, m.published, m.sources = nil, nil, nil
	m.mu.Unlock()
	m.reconcile(context.Background())
}

func (m *Manager) open(ctx context.Context, w want) *forwarder {
	f := &forwarder{w: w, host: hostAddr(w), close: func() {}}
	if w.proto == "tcp" || w.proto == "udp" {
		if held(w.proto, w.port) {
			f.err = fmt.Errorf("host port %d is %w", w.port, ErrPortInUse)
			return f
		}
	}
	switch w.proto {
	case "tcp":
		ln, err := net.Listen(family("tcp", w.bind), f.host)
		if err != nil {
			f.err = describeBindError(w.port, err)
			return f
		}
		f.close = func() { ln.Close() }
		go m.serveTCP(ctx, ln, w)
	case "udp":
		pc, err := net.ListenPacket(family("udp", w.bind), f.host)
		if err != nil {
			f.err = describeBindError(w.port, err)
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

func describeBindError(port int, err error) error {
	if errors.Is(err, errAddrInUse) {
		return fmt.Errorf("host port %d is %w (%w)", port, ErrPortInUse, err)
	}
	return err
}

func (m *Manager) serveTCP(ctx context.Context, ln net.Listener, w want) {
	for {
		c, err := transport.AcceptConn(ctx, ln)
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
