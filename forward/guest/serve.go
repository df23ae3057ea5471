package guest

import (
	"context"
	"net"
	"sync"

	"github.com/skiff-dev/skiff/forward/transport"
)

// ServeTransport serves the authenticated transport on every listener until ctx ends or
// all of them fail; one medium failing (a vsock device that goes away) leaves the others.
func ServeTransport(ctx context.Context, lns []net.Listener, secret []byte, route transport.Router, logf func(string, ...any)) {
	var wg sync.WaitGroup
	for _, ln := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := transport.Serve(ctx, ln, secret, route, logf); err != nil {
				logf("transport on %s: %v", ln.Addr(), err)
			}
		}()
	}
	wg.Wait()
}
