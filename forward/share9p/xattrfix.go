package share9p

import (
	"encoding/binary"
	"net"
	"sync"

	"github.com/hugelgupf/p9/linux"
)

// 9P message types and the header every message starts with: size[4] type[1] tag[2].
const (
	msgRlerror    = 7
	msgTxattrwalk = 30
	headerLen     = 7
)

// xattrConn corrects one answer of the p9 library's server: it turns every failed
// Txattrwalk into EINVAL, and the guest's kernel refuses to exec a file whose
// security.capability read fails with EINVAL ("Invalid argument reading file caps").
// Files here have no extended attributes, so a lookup of one fails with ENODATA, as on
// any file system without them. The connection notes the tags of Txattrwalk requests as
// the server reads them and rewrites the errno of their Rlerror answers as the server
// writes them; everything else passes as it is, each answer in one write.
type xattrConn struct {
	net.Conn

	mu      sync.Mutex
	pending map[uint16]bool // Txattrwalk tags not yet answered

	in frame // the server's reading side

	wmu    sync.Mutex
	out    frame       // the server's writing side
	msg    net.Buffers // the answer being written, sent when whole
	wbuf   []byte      // the answer gathered for its one write
	fix    bool        // the answer is an Rlerror to a Txattrwalk
	errno  [4]byte     // its errno, gathered to rewrite
	nerrno int
}

// frame follows a stream of 9P messages.
type frame struct {
	hdr  [headerLen]byte
	have int // header bytes seen
	left int // body bytes left
}

// header returns the bytes of b that complete the header, and whether it is complete.
func (f *frame) header(b []byte) (int, bool) {
	k := copy(f.hdr[f.have:], b)
	f.have += k
	if f.have < headerLen {
		return k, false
	}
	size := int(binary.LittleEndian.Uint32(f.hdr[:4]))
	f.left = max(size-headerLen, 0) // a bad size ends the connection at the server
	return k, true
}

func (f *frame) typ() byte   { return f.hdr[4] }
func (f *frame) tag() uint16 { return binary.LittleEndian.Uint16(f.hdr[5:]) }

func newXattrConn(c net.Conn) *xattrConn {
	return &xattrConn{Conn: c, pending: map[uint16]bool{}}
}

func (c *xattrConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	for b := p[:n]; len(b) > 0; {
		if c.in.have < headerLen {
			k, done := c.in.header(b)
			b = b[k:]
			if done && c.in.typ() == msgTxattrwalk {
				c.mu.Lock()
				c.pending[c.in.tag()] = true
				c.mu.Unlock()
			}
		} else {
			k := min(len(b), c.in.left)
			c.in.left -= k
			b = b[k:]
		}
		if c.in.have == headerLen && c.in.left == 0 {
			c.in.have = 0
		}
	}
	return n, err
}

func (c *xattrConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for b := p; len(b) > 0; {
		if c.out.have < headerLen {
			k, done := c.out.header(b)
			b = b[k:]
			if done {
				c.msg = append(c.msg, c.out.hdr[:]) // not read again before the flush
				c.mu.Lock()
				c.fix = c.out.typ() == msgRlerror && c.pending[c.out.tag()] && c.out.left == len(c.errno)
				delete(c.pending, c.out.tag())
				c.mu.Unlock()
			}
		} else {
			k := min(len(b), c.out.left)
			if c.fix {
				c.nerrno += copy(c.errno[c.nerrno:], b[:k])
			} else {
				// The server's buffers live until its send returns, and an answer is
				// sent whole within one send.
				c.msg = append(c.msg, b[:k])
			}
			c.out.left -= k
			b = b[k:]
		}
		if c.out.have == headerLen && c.out.left == 0 {
			if err := c.flush(); err != nil {
				return 0, err
			}
		}
	}
	return len(p), nil
}

// flush sends the whole answer, its errno rewritten if it is a failed xattr lookup.
func (c *xattrConn) flush() error {
	if c.fix {
		if binary.LittleEndian.Uint32(c.errno[:]) == uint32(linux.EINVAL) {
			binary.LittleEndian.PutUint32(c.errno[:], uint32(linux.ENODATA))
		}
		c.msg = append(c.msg, c.errno[:])
	}
	// One write per answer: over the user-mode network's TCP (gvisor) every write is a
	// segment of its own, and an answer split in a 7-byte header and a body cost the
	// guest a second packet, a second interrupt and a second ACK per request under
	// emulation; for a stat that is four requests, each waiting on the last.
	c.wbuf = c.wbuf[:0]
	for _, b := range c.msg {
		c.wbuf = append(c.wbuf, b...)
	}
	c.msg, c.fix, c.nerrno, c.out.have = c.msg[:0], false, 0, 0
	_, err := c.Conn.Write(c.wbuf)
	if cap(c.wbuf) > maxKeptBuf {
		c.wbuf = nil // a large read's answer is not kept for the next small one
	}
	return err
}

// maxKeptBuf is the largest answer buffer a connection keeps between answers.
const maxKeptBuf = 64 << 10
