package hostagent

import (
	"context"
	"errors"

	"github.com/skiff-dev/skiff/forward/engineproxy"
	"github.com/skiff-dev/skiff/forward/winpipe"
	"github.com/skiff-dev/skiff/installer/hostenv"
)

// serveEngine serves the engine API on the machine's own named pipe, and on
// \\.\pipe\docker_engine too when no other engine holds it, for tools that ignore
// contexts and DOCKER_HOST.
func (a *Agent) serveEngine(ctx context.Context, p *engineproxy.Proxy) error {
	ln, err := winpipe.Listen(a.Dir.EngineEndpoint())
	if err != nil {
		return err
	}
	a.goAgent(ctx, "engine endpoint", func(ctx context.Context) error { return p.Serve(ctx, ln) })
	a.goAgent(ctx, "docker_engine pipe", func(ctx context.Context) error {
		err := hostenv.ClaimPipe(ctx, hostenv.PipeOptions{Serve: func(ctx context.Context, name string) error {
			wl, err := winpipe.Listen(name)
			if err != nil {
				return err
			}
			return p.Serve(ctx, wl)
		}})
		if err != nil && !errors.Is(err, context.Canceled) {
			a.warn("%s not served: %v", hostenv.DockerEnginePipe, err)
		}
		return nil
	})
	return nil
}
