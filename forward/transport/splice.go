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
		if _, err := io.Copy(dst, src); err != nil {
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
