package transport

import (
	"io"
	"net"
	"sync"
)

type closeWriter interface{ CloseWrite() error }

// Splice copies both ways until both directions are done, passing each EOF on as a
// half-close so that `docker run -i` sees stdin end while its output keeps flowing.
func Splice(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	one := func(dst, src net.Conn) {
		defer wg.Done()
		if _, err := copyConn(dst, src); err != nil {
			// A reset or a failed write ends both directions; waiting would hang.
			a.Close()
			b.Close()
			return
		}
		if cw, ok := dst.(closeWriter); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	go one(a, b)
	go one(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}

// kernelConn reports whether c is a socket the kernel can splice(2).
func kernelConn(c net.Conn) bool {
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
		return true
	}
	return false
}

// bufPool holds copy buffers as large as one segment of the user-mode network (MTU
// 65520): each write into the netstack becomes one full frame, and every frame costs a
// trip through the emulator.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// bulkRead is a read that shows a stream carries bulk data (a docker cp, a port's
// upload), not requests and answers.
const bulkRead = 32 << 10

// copyConn copies src to dst with read and write, one frame's worth at a time. Between
// two kernel sockets a stream whose reads come in bulk goes on with io.Copy, which
// splices: splice(2) saves a copy per byte but costs more per call than read and write,
// and an engine API request and its answer are a few hundred bytes (in an emulated
// guest, splicing made the agent's copy loop cost 5 ms of CPU per GET /_ping).
func copyConn(dst, src net.Conn) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	splice := kernelConn(dst) && kernelConn(src)
	var written int64
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			w, werr := dst.Write(buf[:n])
			written += int64(w)
			if werr != nil {
				return written, werr
			}
			if splice && n >= bulkRead {
				m, err := io.Copy(dst, src)
				return written + m, err
			}
		}
		if rerr == io.EOF {
			return written, nil
		}
		if rerr != nil {
			return written, rerr
		}
	}
}
