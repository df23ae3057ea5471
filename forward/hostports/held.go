package hostports

import (
	"errors"
	"net"
	"strconv"
	"sync"
	"time"
)

// probeTimeout bounds one connect probe. A loopback connect is answered at once on Linux
// and macOS; Windows retries a refused one for about a second, which the probe cuts short
// (a port that slow to answer is taken as free).
const probeTimeout = 500 * time.Millisecond

// held reports whether a program on the host already serves proto/port where the host's
// own clients look for it. Binding alone does not tell: Linux lets 127.0.0.1:P be bound
// while [::1]:P is held, and macOS (with the SO_REUSEADDR Go sets) and Windows let a
// specific address be bound over another program's wildcard, taking its local clients.
func held(proto string, port int) bool {
	if proto == "udp" {
		return udpHeld(port)
	}
	// A TCP listener is found the way its clients find it: by connecting, on both
	// loopback addresses (a wildcard listener answers on them too).
	var wg sync.WaitGroup
	var mu sync.Mutex
	found := false
	for _, ip := range []string{"127.0.0.1", "::1"} {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, strconv.Itoa(port)), probeTimeout)
			if err != nil {
				return
			}
			c.Close()
			mu.Lock()
			found = true
			mu.Unlock()
		})
	}
	wg.Wait()
	return found
}

// udpHeld binds each loopback and wildcard address in turn: UDP has no connect to probe
// with, and without SO_REUSEADDR (Go sets none on UDP) a bind of the very address another
// program holds fails on every host OS, whatever each allows between wildcard and specific.
func udpHeld(port int) bool {
	for _, a := range []struct{ network, ip string }{{"udp4", "127.0.0.1"}, {"udp6", "::1"}, {"udp4", "0.0.0.0"}, {"udp6", "::"}} {
		pc, err := net.ListenPacket(a.network, net.JoinHostPort(a.ip, strconv.Itoa(port)))
		if err == nil {
			pc.Close()
			continue
		}
		if errors.Is(err, errAddrInUse) {
			return true
		}
	}
	return false
}
