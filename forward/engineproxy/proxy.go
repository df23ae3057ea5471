// Package engineproxy serves the engine API socket on the host. It is byte-level for
// everything except the request line and headers, which it reads to find the two things a
// plain splice cannot do: rewriting host paths in container-create bodies, and noticing a
// hijack (attach, exec, BuildKit session) after which both directions become raw streams.
// Responses are not parsed, except the head of the answer to a request that asks to
// switch protocols: the client's bytes become a raw stream only once the engine has
// answered 101, or 200 with a stream media type and no length (what dockerd and Podman
// answer a hijack that came without an Upgrade header, as Podman's client sends its
// exec starts and attaches). Long-lived streams (logs -f, events) flow as the engine
// writes them, and half-closes pass straight through.
package engineproxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/skiff-dev/skiff/forward/pathmap"
	"github.com/skiff-dev/skiff/forward/transport"
)

// Proxy forwards engine API connections to the guest.
type Proxy struct {
	// Dial opens a stream to the engine in the guest.
	Dial func(ctx context.Context) (net.Conn, error)
	// DialFirst, when set, is used instead of Dial: it opens the stream with its first
	// bytes (the first request) sent along, so that a new connection's first answer
	// costs one round trip to the guest, not two (GuestDialer).
	DialFirst func(ctx context.Context, first []byte) (net.Conn, error)
	// Paths translates host paths; nil leaves bodies untouched.
	Paths *pathmap.Table
	Logf  func(string, ...any)
}

// maxRewriteBody bounds the bodies read whole for rewriting (container create is small).
const maxRewriteBody = 16 << 20

// maxHeaderBytes bounds a request's line and headers (and the head of a response the
// proxy reads), as net/http's server does by default.
const maxHeaderBytes = 1 << 20

// bufSize is the size of the proxy's read buffers.
const bufSize = 64 << 10

// hijackRE matches endpoints that turn the connection into a raw stream: Docker's
// attach and exec start (also served by Podman), Podman's own (under /libpod), and
// BuildKit's session.
var hijackRE = regexp.MustCompile(`^(/v[0-9.]+)?(/libpod)?/(containers/[^/]+/attach|exec/[^/]+/start|session|grpc)$`)

// streamTypes are the media types of a hijacked attach or exec stream.
var streamTypes = []string{"application/vnd.docker.raw-stream", "application/vnd.docker.multiplexed-stream"}

// Serve accepts connections on ln until ctx ends.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	return transport.AcceptLoop(ctx, ln, func(c net.Conn) { p.handle(ctx, c) })
}

func (p *Proxy) handle(ctx context.Context, client net.Conn) {
	var up net.Conn
	if p.DialFirst != nil {
		up = newFirstConn(ctx, p.DialFirst)
	} else {
		var err error
		if up, err = p.Dial(ctx); err != nil {
			p.unreachable(client, err)
			client.Close()
			return
		}
	}
	// The request side hands the response side one channel per request that asks to
	// switch protocols, before sending it; the response side answers on it whether the
	// engine switched.
	expect := make(chan chan bool, 1)
	respDone := make(chan struct{})
	go func() {
		defer close(respDone)
		if err := responses(client, up, expect); err != nil {
			// A stream opened with the first request fails here before any answer: the
			// client is told why, as when the dial comes first.
			if de := (*dialError)(nil); errors.As(err, &de) {
				p.unreachable(client, de.err)
			}
			client.Close()
			up.Close()
			return
		}
		closeWrite(client)
	}()
	p.requests(client, up, expect, respDone)
	<-respDone
	client.Close()
	up.Close()
}

// unreachable logs a failed dial of the engine and answers the client with it.
func (p *Proxy) unreachable(client io.Writer, err error) {
	p.Logf("engine: %v", err)
	writeError(client, http.StatusBadGateway, "the Skiff machine's engine is not reachable: "+err.Error())
}

// responses copies the engine's bytes to the client as they come, reading the head of
// an answer only when the request side expects one. A non-pipelining client (all of
// them) sends a request only after it has read the previous answer, so the bytes after
// an expectation is queued begin the answer to that request.
func responses(client io.Writer, up io.Reader, expect <-chan chan bool) error {
	br := bufio.NewReaderSize(up, bufSize)
	for {
		if _, err := br.Peek(1); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		select {
		case verdict := <-expect:
			switched, err := copySwitchHead(client, br)
			verdict <- switched
			if err != nil {
				return err
			}
			if switched {
				_, err := br.WriteTo(client)
				return err
			}
		default:
		}
		b, _ := br.Peek(br.Buffered())
		if _, err := client.Write(b); err != nil {
			return err
		}
		br.Discard(len(b))
	}
}

// copySwitchHead copies the head of an answer, and of any interim 1xx before it, and
// reports whether the connection is now a raw stream.
func copySwitchHead(w io.Writer, br *bufio.Reader) (bool, error) {
	for {
		head, err := copyHead(w, br)
		code := statusOf(head)
		if err != nil || code == http.StatusSwitchingProtocols || code < 100 || code >= 200 {
			return code == http.StatusSwitchingProtocols || hijackedOK(code, head), err
		}
	}
}

// hijackedOK reports whether a 2xx answer starts a hijacked stream: a stream media type
// and neither a length nor chunking, so the body runs until the connection closes.
func hijackedOK(code int, head []byte) bool {
	if code < 200 || code >= 300 {
		return false
	}
	_, rest, _ := bytes.Cut(head, []byte("\n"))
	h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(rest))).ReadMIMEHeader()
	if err != nil && !errors.Is(err, io.EOF) {
		return false
	}
	if h.Get("Content-Length") != "" || h.Get("Transfer-Encoding") != "" {
		return false
	}
	mt, _, _ := strings.Cut(h.Get("Content-Type"), ";")
	for _, t := range streamTypes {
		if strings.EqualFold(strings.TrimSpace(mt), t) {
			return true
		}
	}
	return false
}

// statusOf is the status code of a response head, 0 when it is not one.
func statusOf(head []byte) int {
	status, _, _ := bytes.Cut(head, []byte("\n"))
	f := strings.Fields(string(status))
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/") {
		return 0
	}
	code, _ := strconv.Atoi(f[1])
	return code
}

// copyHead copies a response's status line and headers and returns them; a head that
// does not end (or is over maxHeaderBytes) is copied as far as read, and the rest flows
// on unread.
func copyHead(w io.Writer, br *bufio.Reader) ([]byte, error) {
	var head []byte
	for {
		line, err := br.ReadSlice('\n')
		head = append(head, line...)
		if err == nil && (bytes.HasSuffix(head, []byte("\n\r\n")) || bytes.HasSuffix(head, []byte("\n\n"))) {
			break
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) || len(head) > maxHeaderBytes {
			if _, werr := w.Write(head); werr != nil {
				return nil, werr
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				err = nil
			}
			return nil, err
		}
	}
	_, err := w.Write(head)
	return head, err
}

// headerLimit ends the client's stream (EOF) once a request's line and headers have
// taken more than their bound; off while bodies and raw streams flow.
type headerLimit struct {
	r    io.Reader
	left int64 // <0: no limit
	hit  bool
}

func (l *headerLimit) Read(p []byte) (int, error) {
	if l.left < 0 {
		return l.r.Read(p)
	}
	if l.left == 0 {
		l.hit = true
		return 0, io.EOF
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

// requests forwards requests one by one until EOF or a hijack the engine accepted.
func (p *Proxy) requests(client, up net.Conn, expect chan<- chan bool, respDone <-chan struct{}) {
	lim := &headerLimit{r: client, left: -1}
	br := bufio.NewReaderSize(lim, bufSize)
	bw := bufio.NewWriterSize(up, bufSize)
	for {
		// What the buffer reads ahead counts too, so a head of up to maxHeaderBytes
		// always fits.
		lim.left, lim.hit = maxHeaderBytes+bufSize, false
		req, err := http.ReadRequest(br)
		lim.left = -1
		if err != nil {
			if lim.hit {
				p.Logf("engine API: refused a request whose headers are over %d bytes", maxHeaderBytes)
				writeError(client, http.StatusRequestHeaderFieldsTooLarge,
					fmt.Sprintf("request refused: its headers are over %d bytes", maxHeaderBytes))
				lingerClose(client)
				up.Close()
				return
			}
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
		var verdict chan bool
		if asksToSwitch(req) {
			verdict = make(chan bool, 1)
			expect <- verdict
		}
		if err := req.Write(bw); err != nil {
			up.Close()
			return
		}
		if err := bw.Flush(); err != nil {
			up.Close()
			return
		}
		if verdict == nil {
			continue
		}
		select {
		case switched := <-verdict:
			if !switched {
				continue // the engine answered without hijacking: still HTTP
			}
		case <-respDone:
			return
		}
		// From here on both sides speak the stream protocol, not HTTP.
		if _, err := br.WriteTo(up); err != nil {
			up.Close()
			return
		}
		closeWrite(up)
		return
	}
}

// mayHijack is a cheap test for the endpoints hijackRE matches, so that the regexp runs
// only for them: it was a tenth of the host agent's CPU under a stream of GET /_ping.
func mayHijack(path string) bool {
	for _, end := range []string{"/attach", "/start", "/session", "/grpc"} {
		if strings.HasSuffix(path, end) {
			return true
		}
	}
	return false
}

// asksToSwitch reports whether a request may turn the connection into a raw stream.
func asksToSwitch(req *http.Request) bool {
	if mayHijack(req.URL.Path) && hijackRE.MatchString(req.URL.Path) || req.Header.Get("Upgrade") != "" {
		return true
	}
	for _, v := range req.Header.Values("Connection") {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

// lingerClose closes the client's side for writing and reads what it is still sending
// for a moment, so that the answer is not lost to a reset.
func lingerClose(c net.Conn) {
	closeWrite(c)
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	io.Copy(io.Discard, io.LimitReader(c, 8*maxHeaderBytes))
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

// GuestFirstDialer adapts a transport dialer that can send a stream's first bytes with
// its dial (transport.FirstDialer) to Proxy.DialFirst; nil for one that cannot.
func GuestFirstDialer(d transport.Dialer, service string) func(ctx context.Context, first []byte) (net.Conn, error) {
	fd, ok := d.(transport.FirstDialer)
	if !ok {
		return nil
	}
	return func(ctx context.Context, first []byte) (net.Conn, error) { return fd.DialFirst(ctx, service, first) }
}
