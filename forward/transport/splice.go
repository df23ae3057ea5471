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

// copyConn copies src to dst. Between two kernel sockets it is io.Copy, which splices
// without a userland copy (what matters in an emulated guest); otherwise it copies with a
// buffer of one frame rather than io.Copy's 32 KiB.
func copyConn(dst, src net.Conn) (int64, error) {
	if kernelConn(dst) && kernelConn(src) {
		return io.Copy(dst, src)
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	return io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, *bp)
}
