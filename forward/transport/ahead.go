package transport

import (
	"context"
	"net"
	"sync"
	"time"
)

// aheadAge is how long a stream opened ahead is kept unused: well under the 5 minutes
// dockerd waits for a new connection's first request before it closes it.
const aheadAge = 2 * time.Minute

// ahead is a Client's streams opened ahead of use, for the services named in
// Client.Ahead: granted by the peer and connected to the service, which waits for the
// stream's first bytes.
type ahead struct {
	mu      sync.Mutex
	conns   map[string][]parkedConn
	filling map[string]int
	closed  bool
}

// takeAhead returns a live stream to service opened ahead, young enough to use, or nil.
func (c *Client) takeAhead(service string) net.Conn {
	a := &c.ahead
	for {
		a.mu.Lock()
		cs := a.conns[service]
		if len(cs) == 0 {
			a.mu.Unlock()
			return nil
		}
		pc := cs[len(cs)-1]
		a.conns[service] = cs[:len(cs)-1]
		a.mu.Unlock()
		if time.Since(pc.since) < aheadAge && alive(pc.conn) {
			return pc.conn
		}
		pc.conn.Close()
	}
}

// alive says whether the peer has not closed conn: a service waiting for the first
// bytes sends nothing, so a read that times out at once finds it open.
func alive(conn net.Conn) bool {
	conn.SetReadDeadline(time.Unix(1, 0))
	_, err := conn.Read(make([]byte, 1))
	conn.SetReadDeadline(time.Time{})
	if te, ok := err.(interface{ Timeout() bool }); ok && te.Timeout() {
		return true
	}
	return false
}

// fillAhead opens streams to service in the background until want are open or being
// opened. Like parking, only a Dial starts a fill.
func (c *Client) fillAhead(service string, want int) {
	a := &c.ahead
	a.mu.Lock()
	if a.conns == nil {
		a.conns, a.filling = map[string][]parkedConn{}, map[string]int{}
	}
	need := want - len(a.conns[service]) - a.filling[service]
	if a.closed || need <= 0 {
		a.mu.Unlock()
		return
	}
	a.filling[service] += need
	a.mu.Unlock()
	for i := 0; i < need; i++ {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
			conn, err := c.dialParked(ctx, service, nil)
			cancel()
			a.mu.Lock()
			defer a.mu.Unlock()
			a.filling[service]--
			if err != nil {
				return
			}
			if a.closed {
				conn.Close()
				return
			}
			a.conns[service] = append(a.conns[service], parkedConn{conn, time.Now()})
		}()
	}
}

// closeAhead closes the streams opened ahead and opens no more.
func (c *Client) closeAhead() {
	a := &c.ahead
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	for _, cs := range a.conns {
		for _, pc := range cs {
			pc.conn.Close()
		}
	}
	a.conns = nil
}
