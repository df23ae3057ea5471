package engineproxy

import (
	"context"
	"io"
	"net"
	"sync"
	"time"
)

// maxFirst bounds the bytes sent with a dial (a request's head and a small body); the
// rest of a large first write follows once the stream is open.
const maxFirst = 64 << 10

// dialError is a failed dial of the stream, as its reader and writer see it.
type dialError struct{ err error }

func (e *dialError) Error() string { return "open the engine stream: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// firstConn is the upstream of a client connection whose stream is opened on the first
// write, with what is written: the client's first request. A client that sends nothing
// costs no stream. One goroutine writes (the request side), another reads.
type firstConn struct {
	dial   func(ctx context.Context, first []byte) (net.Conn, error)
	ctx    context.Context
	cancel context.CancelFunc
	ready  chan struct{} // closed once conn or err is set

	mu      sync.Mutex
	started bool
	closed  bool
	conn    net.Conn
	err     error
}

func newFirstConn(ctx context.Context, dial func(ctx context.Context, first []byte) (net.Conn, error)) *firstConn {
	ctx, cancel := context.WithCancel(ctx)
	return &firstConn{dial: dial, ctx: ctx, cancel: cancel, ready: make(chan struct{})}
}

// settle records the stream or why there is none, unless it is settled already.
func (f *firstConn) settle(conn net.Conn, err error) {
	select {
	case <-f.ready:
		if conn != nil {
			conn.Close()
		}
		return
	default:
	}
	f.conn, f.err = conn, err
	close(f.ready)
}

// stream waits for the stream to be opened or to fail.
func (f *firstConn) stream() (net.Conn, error) {
	<-f.ready
	return f.conn, f.err
}

func (f *firstConn) Write(p []byte) (int, error) {
	f.mu.Lock()
	if f.started || f.closed {
		f.mu.Unlock()
		c, err := f.stream()
		if err != nil {
			return 0, err
		}
		return c.Write(p)
	}
	f.started = true
	f.mu.Unlock()
	first := p[:min(len(p), maxFirst)]
	c, err := f.dial(f.ctx, first)
	f.mu.Lock()
	switch {
	case f.closed:
		if c != nil {
			c.Close()
		}
		c, err = nil, net.ErrClosed
	case err != nil:
		err = &dialError{err}
	}
	f.settle(c, err)
	f.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if len(first) == len(p) {
		return len(p), nil
	}
	n, err := c.Write(p[len(first):])
	return len(first) + n, err
}

func (f *firstConn) Read(p []byte) (int, error) {
	c, err := f.stream()
	if err != nil {
		return 0, err
	}
	return c.Read(p)
}

// CloseWrite ends the stream's sending side; before any request nothing is opened, and
// the reader sees the end at once.
func (f *firstConn) CloseWrite() error {
	f.mu.Lock()
	if !f.started && !f.closed {
		f.settle(nil, io.EOF)
		f.mu.Unlock()
		return nil
	}
	f.mu.Unlock()
	c, err := f.stream()
	if err != nil {
		return nil
	}
	closeWrite(c)
	return nil
}

func (f *firstConn) Close() error {
	f.mu.Lock()
	f.closed = true
	f.cancel()
	if !f.started {
		f.settle(nil, net.ErrClosed)
	}
	f.mu.Unlock()
	select {
	case <-f.ready:
		if f.conn != nil {
			return f.conn.Close()
		}
	default:
		// A dial in progress ends with ctx; its stream is closed when it settles.
	}
	return nil
}

// The proxy sets no deadlines on its upstream and asks for no addresses; these make
// firstConn a net.Conn.
func (f *firstConn) LocalAddr() net.Addr                { return streamAddr{} }
func (f *firstConn) RemoteAddr() net.Addr               { return streamAddr{} }
func (f *firstConn) SetDeadline(t time.Time) error      { return nil }
func (f *firstConn) SetReadDeadline(t time.Time) error  { return nil }
func (f *firstConn) SetWriteDeadline(t time.Time) error { return nil }

type streamAddr struct{}

func (streamAddr) Network() string { return "transport" }
func (streamAddr) String() string  { return "engine stream" }
