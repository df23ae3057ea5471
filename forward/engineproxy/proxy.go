// Package engineproxy serves the engine API socket on the host. It is byte-level for
// everything except the request line and headers, which it reads to find the two things a
// plain splice cannot do: rewriting host paths in container-create bodies, and noticing a
// hijack (attach, exec, BuildKit session) after which both directions become raw streams.
// Responses are never parsed: long-lived streams (logs -f, events) flow as the engine
// writes them, and half-closes pass straight through.
package engineproxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"

	"github.com/skiff-dev/skiff/forward/pathmap"
	"github.com/skiff-dev/skiff/forward/transport"
)

// Proxy forwards engine API connections to the guest.
type Proxy struct {
	// Dial opens a stream to the engine in the guest.
	Dial func(ctx context.Context) (net.Conn, error)
	// Paths translates host paths; nil leaves bodies untouched.
	Paths *pathmap.Table
	Logf  func(string, ...any)
}

// maxRewriteBody bounds the bodies read whole for rewriting (container create is small).
const maxRewriteBody = 16 << 20

// hijackRE matches endpoints that turn the connection into a raw stream.
var hijackRE = regexp.MustCompile(`^(/v[0-9.]+)?/(containers/[^/]+/attach|exec/[^/]+/start|session|grpc)$`)

// Serve accepts connections on ln until ctx ends.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	return transport.AcceptLoop(ctx, ln, func(c net.Conn) { p.handle(ctx, c) })
}

func (p *Proxy) handle(ctx context.Context, client net.Conn) {
	up, err := p.Dial(ctx)
	if err != nil {
		p.Logf("engine: %v", err)
		writeError(client, http.StatusBadGateway, "the Skiff machine's engine is not reachable: "+err.Error())
		client.Close()
		return
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Responses: raw, for the whole connection.
		if _, err := io.Copy(client, up); err != nil {
			client.Close()
			up.Close()
			return
		}
		closeWrite(client)
	}()
	p.requests(client, up)
	wg.Wait()
	client.Close()
	up.Close()
}

// requests forwards requests one by one until EOF or a hijack.
func (p *Proxy) requests(client, up net.Conn) {
	br := bufio.NewReaderSize(client, 64<<10)
	bw := bufio.NewWriterSize(up, 64<<10)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				up.Close()
				return
			}
			closeWrite(up)
			return
		}
		if p.Paths != nil && pathmap.NeedsRewrite(req.Method, req.URL.Path) {
			if err := p.rewrite(req); err != nil {
				// The engine never sees it; the client gets the reason. Nothing is
				// outstanding upstream, so writing to the client here cannot interleave.
				req.Body.Close()
				writeError(client, http.StatusBadRequest, err.Error())
				continue
			}
		}
		hijack := hijackRE.MatchString(req.URL.Path) || strings.EqualFold(req.Header.Get("Connection"), "upgrade")
		if err := req.Write(bw); err != nil {
			up.Close()
			return
		}
		if err := bw.Flush(); err != nil {
			up.Close()
			return
		}
		if hijack {
			// From here on both sides speak the stream protocol, not HTTP.
			if _, err := br.WriteTo(up); err != nil {
				up.Close()
				return
			}
			closeWrite(up)
			return
		}
	}
}

func (p *Proxy) rewrite(req *http.Request) error {
	body, err := io.ReadAll(io.LimitReader(req.Body, maxRewriteBody+1))
	if err != nil {
		return fmt.Errorf("read request body: %w", err)
	}
	if len(body) > maxRewriteBody {
		return fmt.Errorf("request body over %d bytes", maxRewriteBody)
	}
	out, err := p.Paths.RewriteBody(req.URL.Path, body)
	if err != nil {
		return err
	}
	req.Body = io.NopCloser(strings.NewReader(string(out)))
	req.ContentLength = int64(len(out))
	req.TransferEncoding = nil
	req.Header.Del("Transfer-Encoding")
	return nil
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

// writeError answers in the engine's own error format so the docker CLI prints it as
// "Error response from daemon: ...".
func writeError(w io.Writer, code int, msg string) {
	b, _ := json.Marshal(map[string]string{"message": msg})
	fmt.Fprintf(w, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		code, http.StatusText(code), len(b), b)
}

// GuestDialer adapts a transport dialer to the engine service.
func GuestDialer(d transport.Dialer, service string) func(ctx context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) { return d.Dial(ctx, service) }
}
