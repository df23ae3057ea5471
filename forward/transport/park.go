package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// ServicePark asks the server to hold an authenticated stream until the client names
// the service it is for. A client keeps a few parked so that opening a stream costs one
// round trip (name, answer) instead of a connect and the two of the handshake; each was
// authenticated with the machine's secret like any other stream, and carries one
// service only.
const ServicePark = "transport/park"

// parkedAge is how long a parked stream is kept unused: a suspended or restarted peer
// leaves dead streams, and one found dead costs a fresh dial on top.
const parkedAge = 5 * time.Minute

// serveParked waits for the name of the service a parked stream is for, then answers and
// serves it as a fresh stream.
func serveParked(ctx context.Context, conn net.Conn, route Router, idle time.Duration) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	conn.SetReadDeadline(time.Now().Add(idle))
	var n [2]byte
	_, err := io.ReadFull(conn, n[:])
	name := make([]byte, binary.BigEndian.Uint16(n[:]))
	if err == nil {
		_, err = io.ReadFull(conn, name)
	}
	conn.SetReadDeadline(time.Time{})
	if !stop() || err != nil {
		conn.Close()
		return
	}
	service := string(name)
	if service == ServicePark {
		Refuse(conn, "a parked stream cannot be parked again")
		conn.Close()
		return
	}
	dispatch(ctx, conn, service, route)
}

// parked is a Client's pool of parked streams.
type parked struct {
	mu      sync.Mutex
	conns   []parkedConn
	filling int
	off     bool // the peer refused to park, or the client is closed
	closed  bool
}

type parkedConn struct {
	conn  net.Conn
	since time.Time
}

// take returns a parked stream young enough to use, or nil.
func (p *parked) take() net.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.conns) > 0 {
		pc := p.conns[len(p.conns)-1]
		p.conns = p.conns[:len(p.conns)-1]
		if time.Since(pc.since) < parkedAge {
			return pc.conn
		}
		pc.conn.Close()
	}
	return nil
}

// fill parks streams in the background until want are parked or being parked. Nothing
// is dialled while the client is idle: only a Dial starts a fill.
func (c *Client) fill(want int) {
	p := &c.parked
	p.mu.Lock()
	need := want - len(p.conns) - p.filling
	if p.off || need <= 0 {
		p.mu.Unlock()
		return
	}
	p.filling += need
	p.mu.Unlock()
	for i := 0; i < need; i++ {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
			conn, err := c.open(ctx, ServicePark, nil)
			cancel()
			p.mu.Lock()
			defer p.mu.Unlock()
			p.filling--
			if err != nil {
				// A peer that does not know parking answers so; anything else (the VM is
				// stopping) waits for the next Dial to try again.
				var refused *RefusedError
				if errors.As(err, &refused) {
					p.off = true
				}
				return
			}
			if p.closed {
				conn.Close()
				return
			}
			p.conns = append(p.conns, parkedConn{conn, time.Now()})
		}()
	}
}

// unpark names the service for a parked stream, with the stream's first bytes, and reads
// the answer: one round trip.
func unpark(ctx context.Context, conn net.Conn, service string, first []byte) error {
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	conn.SetDeadline(time.Now().Add(handshakeTimeout))
	defer conn.SetDeadline(time.Time{})
	msg := binary.BigEndian.AppendUint16(nil, uint16(len(service)))
	msg = append(msg, service...)
	if _, err := conn.Write(append(msg, first...)); err != nil {
		return fmt.Errorf("transport: parked stream: %w", err)
	}
	return readStatus(conn, service)
}

// Close closes the parked streams and those opened ahead, and opens no more.
func (c *Client) Close() error {
	c.closeAhead()
	p := &c.parked
	p.mu.Lock()
	defer p.mu.Unlock()
	p.off, p.closed = true, true
	for _, pc := range p.conns {
		pc.conn.Close()
	}
	p.conns = nil
	return nil
}
