package main

import (
	"context"
	"net"
	"os"
	"path/filepath"

	"github.com/skiff-dev/skiff/forward"
	"github.com/skiff-dev/skiff/forward/engineproxy"
	"github.com/skiff-dev/skiff/forward/transport"
	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/machine/hostagent"
)

// transportSockets serve unix sockets whose connections are streams to the guest
// agent's engine service, for an A/B of how a stream is opened: named on a parked stream
// and then written to (parked), or named together with the client's first bytes
// (parked-first); passed through untouched, or through the host agent's engine proxy
// (proxy, proxy-first).
func transportSockets(b *bench, pm *peerMachine) ([]struct{ name, sock string }, func(), error) {
	secret, err := os.ReadFile(pm.File(machine.FileSecret))
	if err != nil {
		return nil, nil, err
	}
	raw := func(ctx context.Context) (net.Conn, error) { return pm.dialGuest(ctx, hostagent.GuestAgentPort) }
	var socks []struct{ name, sock string }
	var stops []func()
	stop := func() {
		for _, s := range stops {
			s()
		}
	}
	for _, v := range []struct {
		name         string
		first, proxy bool
	}{{"parked", false, false}, {"parked-first", true, false}, {"proxy", false, true}, {"proxy-first", true, true}} {
		name, first := v.name, v.first
		d := &transport.Client{Secret: secret, Raw: raw, Parked: 4}
		sock := filepath.Join(b.home, name+".sock")
		ln, err := net.Listen("unix", sock)
		if err != nil {
			stop()
			return nil, nil, err
		}
		stops = append(stops, func() { ln.Close(); d.Close() })
		if v.proxy {
			// The host agent's engine proxy itself, without path translation.
			p := &engineproxy.Proxy{Dial: engineproxy.GuestDialer(d, forward.ServiceEngine), Logf: func(string, ...any) {}}
			if first {
				p.DialFirst = engineproxy.GuestFirstDialer(d, forward.ServiceEngine)
			}
			go p.Serve(context.Background(), ln)
			socks = append(socks, struct{ name, sock string }{name, sock})
			continue
		}
		go transport.AcceptLoop(context.Background(), ln, func(lc net.Conn) {
			var rc net.Conn
			var err error
			if first {
				buf := make([]byte, 64<<10)
				n, rerr := lc.Read(buf)
				if rerr != nil {
					lc.Close()
					return
				}
				rc, err = d.DialFirst(context.Background(), forward.ServiceEngine, buf[:n])
			} else {
				rc, err = d.Dial(context.Background(), forward.ServiceEngine)
			}
			if err != nil {
				lc.Close()
				return
			}
			transport.Splice(lc, rc)
		})
		socks = append(socks, struct{ name, sock string }{name, sock})
	}
	return socks, stop, nil
}
