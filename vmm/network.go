package vmm

import (
	"context"
	"net"
)

// ServeGuestStreams serves each stream the guest opens on l as the VM's network
// (Network.ServeGuestStream) until l is closed: the guest's network helper opens one per
// boot, and another after a restart.
func ServeGuestStreams(l net.Listener, n Network) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			n.ServeGuestStream(ctx, c)
		}()
	}
}
