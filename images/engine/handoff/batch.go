//go:build linux

package handoff

import (
	"net"
	"sync"
	"time"
)

// batchMax is what a batch holds before Write waits for the send before it: a few of the
// user-mode network's largest frames. A write at least this large goes out by itself.
const batchMax = 256 << 10

// closeWait bounds how long Close and CloseWrite wait for what is still buffered to be
// sent to a peer that does not read; the kernel's own send buffer has a bound of that kind.
var closeWait = time.Minute

// batchConn is a handed-over stream whose writes are sent by a goroutine of the stream's
// own, each send taking everything written while the one before it ran. dockerd flushes
// each message of a log or attach stream and writes each chunk of a download in two parts;
// on a handed-over stream every such write was a send through the guest's TCP stack (a
// segment of its own under TCP_NODELAY), and under emulation the send cost more than the
// engine's own work on the message. A lone write still goes out at once: nothing waits
// for more to come. Write returns once the bytes are buffered, as a socket's does once
// they are in its send buffer; an error of a send is returned by the writes after it and
// by CloseWrite and Close.
type batchConn struct {
	net.Conn

	mu      sync.Mutex
	changed sync.Cond // a send ended, or the stream failed or closed
	buf     []byte    // written and not yet taken by a send
	spare   []byte    // the last send's buffer, for the next batch
	sending bool      // a send (or a large write) is under way
	err     error     // the first failed send's: the stream writes no more
	closed  bool
}

func newBatchConn(c net.Conn) *batchConn {
	b := &batchConn{Conn: c}
	b.changed.L = &b.mu
	return b
}

func (c *batchConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if c.err != nil {
			return 0, c.err
		}
		if c.closed {
			return 0, net.ErrClosed
		}
		if len(p) >= batchMax {
			if !c.sending && len(c.buf) == 0 {
				return c.writeAlone(p)
			}
		} else if len(c.buf) == 0 || len(c.buf)+len(p) <= batchMax {
			break
		}
		c.changed.Wait()
	}
	c.buf = append(c.buf, p...)
	if !c.sending {
		c.sending = true
		go c.send()
	}
	return len(p), nil
}

// writeAlone writes p from the caller, without copying it: nothing is buffered or being
// sent, and a write this large fills segments by itself. Called with c.mu held.
func (c *batchConn) writeAlone(p []byte) (int, error) {
	c.sending = true
	c.mu.Unlock()
	n, err := c.Conn.Write(p)
	c.mu.Lock()
	c.sending = false
	if err != nil && c.err == nil {
		c.err = err
	}
	c.changed.Broadcast()
	return n, err
}

// send writes batches until none is left, then ends; the next Write starts another.
func (c *batchConn) send() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.buf) > 0 && c.err == nil {
		b := c.buf
		c.buf = c.spare[:0]
		c.mu.Unlock()
		_, err := c.Conn.Write(b)
		c.mu.Lock()
		c.spare = b[:0]
		if err != nil && c.err == nil {
			c.err = err
		}
		c.changed.Broadcast()
	}
	c.buf = c.buf[:0]
	c.sending = false
	c.changed.Broadcast()
}

// drain waits until what was written is sent, at most closeWait: past it the send fails
// with a timeout, as a blocked write to the socket would. Called with c.mu held.
func (c *batchConn) drain() error {
	if c.sending || len(c.buf) > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(closeWait))
		for (c.sending || len(c.buf) > 0) && c.err == nil {
			c.changed.Wait()
		}
	}
	return c.err
}

// CloseWrite half-closes the stream once what was written is sent: the HTTP server's
// hijacked streams (attach, exec) end their output this way.
func (c *batchConn) CloseWrite() error {
	c.mu.Lock()
	err := c.drain()
	c.mu.Unlock()
	if err != nil {
		return err
	}
	cw, ok := c.Conn.(interface{ CloseWrite() error })
	if !ok {
		return &net.OpError{Op: "close", Net: c.LocalAddr().Network(), Err: net.ErrClosed}
	}
	return cw.CloseWrite()
}

// Close sends what was written, then closes the stream.
func (c *batchConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return net.ErrClosed
	}
	c.drain()
	c.closed = true
	c.changed.Broadcast()
	c.mu.Unlock()
	return c.Conn.Close()
}
