// Package fake serves a fake host-agent control API and a fake Docker Engine API on
// unix sockets, recording every request, so the tray can be tested (and demonstrated)
// without a machine. It is not a test-only package because `skiff-tray --demo` uses it.
package fake

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Recorder keeps the requests a fake server received, as "METHOD /path".
type Recorder struct {
	mu   sync.Mutex
	reqs []string
}

func (r *Recorder) record(req *http.Request) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req.Method+" "+req.URL.Path)
	r.mu.Unlock()
}

// Requests returns what was received so far.
func (r *Recorder) Requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.reqs...)
}

// Has reports whether a request "METHOD /path" was received.
func (r *Recorder) Has(req string) bool {
	for _, q := range r.Requests() {
		if q == req {
			return true
		}
	}
	return false
}

// Reset forgets the recorded requests.
func (r *Recorder) Reset() {
	r.mu.Lock()
	r.reqs = nil
	r.mu.Unlock()
}

// serveUnix serves h on a unix socket in dir. Unix socket paths are short (104 bytes on
// macOS), so callers pass a short dir.
func serveUnix(dir, name string, h http.Handler) (*httptest.Server, string, error) {
	p := filepath.Join(dir, name)
	os.Remove(p)
	ln, err := net.Listen("unix", p)
	if err != nil {
		return nil, "", err
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	return srv, p, nil
}

// ShortTempDir makes a temp dir with a path short enough for unix sockets.
func ShortTempDir() (string, error) {
	base := os.TempDir()
	if len(base) > 40 || strings.Contains(base, " ") {
		base = "/tmp"
	}
	return os.MkdirTemp(base, "skf")
}
