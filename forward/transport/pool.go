package transport

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"
)

// pool holds a Client's streams opened before they are needed, per key: parked streams
// (waiting for a service's name) or streams opened ahead (granted and waiting for the
// service's first bytes). Either kind sends nothing until used, which take relies on.
type pool struct {
	mu      sync.Mutex
	conns   map[string][]pooledConn
	filling map[string]int
	off     map[string]bool // ServicePark once the peer refused to park
	closed  bool
}

type pooledConn struct {
	conn  net.Conn
	since time.Time
}

// take returns a stream for key younger than maxAge that the peer has not closed, or nil.
func (p *pool) take(key string, maxAge time.Duration) net.Conn {
	for {
		p.mu.Lock()
		cs := p.conns[key]
		if len(cs) == 0 {
			p.mu.Unlock()
			return nil
		}
		pc := cs[len(cs)-1]
		p.conns[key] = cs[:len(cs)-1]
		p.mu.Unlock()
		if time.Since(pc.since) < maxAge && alive(pc.conn) {
			return pc.conn
		}
		pc.conn.Close()
	}
}

// alive says whether the peer has not closed conn: a pooled stream's peer sends nothing
// until the stream is used, so a read that times out at once finds it open.
func alive(conn net.Conn) bool {
	conn.SetReadDeadline(time.Unix(1, 0))
	_, err := conn.Read(make([]byte, 1))
	conn.SetReadDeadline(time.Time{})
	if te, ok := err.(interface{ Timeout() bool }); ok && te.Timeout() {
		return true
	}
	return false
}

// fill opens streams for key with open, in the background, until want are held or being
// opened. Only a Dial calls it, so an idle client dials nothing; a fill that failed is
// tried again by the next Dial.
func (p *pool) fill(key string, want int, open func(context.Context) (net.Conn, error)) {
	p.mu.Lock()
	if p.conns == nil {
		p.conns, p.filling, p.off = map[string][]pooledConn{}, map[string]int{}, map[string]bool{}
	}
	need := want - len(p.conns[key]) - p.filling[key]
	if p.closed || p.off[key] || need <= 0 {
		p.mu.Unlock()
		return
	}
	p.filling[key] += need
	p.mu.Unlock()
	for i := 0; i < need; i++ {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
			conn, err := open(ctx)
			cancel()
			p.mu.Lock()
			defer p.mu.Unlock()
			p.filling[key]--
			var refused *RefusedError
			switch {
			case err != nil:
				// A peer that does not know parking says so once and for all; anything
				// else (the VM is stopping) waits for the next Dial.
				if key == ServicePark && errors.As(err, &refused) {
					p.off[key] = true
				}
			case p.closed:
				conn.Close()
			default:
				p.conns[key] = append(p.conns[key], pooledConn{conn, time.Now()})
			}
		}()
	}
}

// count is how many streams key holds.
func (p *pool) count(key string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns[key])
}

// close closes the streams held and opens no more.
func (p *pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, cs := range p.conns {
		for _, pc := range cs {
			pc.conn.Close()
		}
	}
	p.conns = nil
}
