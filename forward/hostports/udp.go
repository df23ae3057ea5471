package hostports

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skiff-dev/skiff/forward"
)

// udpIdle is how long a UDP flow lives without traffic before its stream is closed.
const udpIdle = 2 * time.Minute

// udpQueue is how many datagrams a flow holds while its stream is being opened or is
// slow; beyond that they are dropped, as a congested network would.
const udpQueue = 64

// udpFlow is one host client's stream to the guest, so replies find their way back.
type udpFlow struct {
	queue chan []byte
	last  atomic.Int64  // unix nanoseconds of the last datagram either way
	done  chan struct{} // closed by stop: the flow is to end
	ended chan struct{} // closed when the flow's stream is closed
	stop  func()
}

func newUDPFlow() *udpFlow {
	f := &udpFlow{queue: make(chan []byte, udpQueue), done: make(chan struct{}), ended: make(chan struct{})}
	f.stop = sync.OnceFunc(func() { close(f.done) })
	f.touch()
	return f
}

func (f *udpFlow) touch() { f.last.Store(time.Now().UnixNano()) }

func (m *Manager) maxUDPFlows() int {
	if m.MaxUDPFlows <= 0 {
		return DefaultMaxUDPFlows
	}
	return m.MaxUDPFlows
}

// serveUDP gives each host client address its own stream. The read loop never waits on
// the guest: a flow's stream is opened by the flow's own goroutine, so one slow handshake
// holds up no other client. At most MaxUDPFlows flows live at once; a new client beyond
// that replaces the one idle longest.
func (m *Manager) serveUDP(ctx context.Context, pc net.PacketConn, w want) {
	var mu sync.Mutex
	flows := map[string]*udpFlow{}
	defer func() {
		mu.Lock()
		for _, f := range flows {
			f.stop()
		}
		mu.Unlock()
	}()
	full := false
	buf := make([]byte, 65535)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		key := addr.String()
		mu.Lock()
		f, ok := flows[key]
		if !ok {
			var evicted *udpFlow
			if len(flows) >= m.maxUDPFlows() {
				if !full {
					m.Logf("ports: %s: %d UDP clients at once; each new one replaces the one idle longest", w.key(), len(flows))
					full = true
				}
				oldest := ""
				for k, o := range flows {
					if oldest == "" || o.last.Load() < flows[oldest].last.Load() {
						oldest = k
					}
				}
				evicted = flows[oldest]
				evicted.stop()
				delete(flows, oldest)
			}
			f = newUDPFlow()
			flows[key] = f
			go func() {
				if evicted != nil {
					// Its stream closes before ours opens, so the limit holds for the
					// guest's streams and not only for this map.
					<-evicted.ended
				}
				m.runUDPFlow(ctx, pc, w, addr, f)
				mu.Lock()
				if flows[key] == f {
					delete(flows, key)
				}
				mu.Unlock()
			}()
		}
		mu.Unlock()
		f.touch()
		select {
		case f.queue <- append([]byte(nil), buf[:n]...):
		default: // the flow is behind: drop, as UDP may
		}
	}
}

// runUDPFlow opens the flow's stream and relays both ways until the flow is stopped,
// idles for udpIdle, or either end fails.
func (m *Manager) runUDPFlow(ctx context.Context, pc net.PacketConn, w want, addr net.Addr, f *udpFlow) {
	defer close(f.ended) // deferred first, so it runs after the stream's Close
	defer f.stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-f.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	g, err := m.Guest.Dial(ctx, forward.PrefixUDP+w.target)
	if err != nil {
		if ctx.Err() == nil {
			m.Logf("ports: %s: %v", w.key(), err)
		}
		return
	}
	defer g.Close()
	context.AfterFunc(ctx, func() { g.Close() })
	go func() {
		defer f.stop()
		rb := make([]byte, 65535)
		for {
			n, err := forward.ReadDatagram(g, rb)
			if err != nil {
				return
			}
			f.touch()
			pc.WriteTo(rb[:n], addr)
		}
	}()
	idle := time.NewTimer(udpIdle)
	defer idle.Stop()
	for {
		select {
		case p := <-f.queue:
			if forward.WriteDatagram(g, p) != nil {
				return
			}
		case <-idle.C:
			left := udpIdle - time.Since(time.Unix(0, f.last.Load()))
			if left <= 0 {
				return
			}
			idle.Reset(left)
		case <-f.done:
			return
		}
	}
}
