//go:build !windows

package hostagent

import (
	"context"
	"os"

	"github.com/skiff-dev/skiff/forward/engineproxy"
)

// serveEngine serves the engine API on the machine's unix socket (0600).
func (a *Agent) serveEngine(ctx context.Context, p *engineproxy.Proxy) error {
	sock := a.Dir.EngineEndpoint()
	os.Remove(sock)
	ln, err := listenUnix(sock)
	if err != nil {
		return err
	}
	a.goAgent(ctx, "engine endpoint", func(ctx context.Context) error { return p.Serve(ctx, ln) })
	return nil
}
