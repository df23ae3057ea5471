package usernet

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
)

// ServicesEnv names a unix socket on which the network serves gvisor-tap-vsock's own
// HTTP API (what gvproxy offers as -services: /services/forwarder/expose, /stats ...)
// and the process's pprof profiles.
// It is an opt-in for benchmarks that compare Skiff's forwarders with gvproxy's on the
// same network; normal use never sets it. The socket is made 0600 since the API is
// unauthenticated.
const ServicesEnv = "SKIFF_USERNET_SERVICES"

func (n *Network) serveServices(path string) error {
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("user-mode network services: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return err
	}
	mux := n.vn.ServicesMux()
	// The process's profiles too: the socket exists to find where forwarding time goes.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	go http.Serve(ln, mux)
	return nil
}
