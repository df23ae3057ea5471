package engineproxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// serveProxy serves p on a fresh socket until the test ends.
func serveProxy(t *testing.T, p *Proxy) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "e.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go p.Serve(ctx, ln)
	return sock
}

// Without DialFirst the stream is dialled first, and requests, hijacks and half-closes
// work as with it.
func TestPlainDial(t *testing.T) {
	dial, _ := fakeEngine(t)
	sock := serveProxy(t, &Proxy{Dial: dial, Logf: t.Logf})
	c := dialProxy(t, sock)
	br := bufio.NewReader(c)
	pingOK(t, c, br, "ping")
	io.WriteString(c, "POST /exec/e1/start HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("exec start: %v %v", resp, err)
	}
	io.WriteString(c, "raw")
	c.(*net.UnixConn).CloseWrite()
	if rest, _ := io.ReadAll(br); string(rest) != "echo:raw" {
		t.Fatalf("after the hijack got %q", rest)
	}
}

// A stream that cannot be opened with the first request answers that request 502 with
// the reason, in the engine's error format.
func TestDialFirstFailureIs502(t *testing.T) {
	sock := serveProxy(t, &Proxy{Logf: t.Logf, DialFirst: func(context.Context, []byte) (net.Conn, error) {
		return nil, errors.New("the guest is gone")
	}})
	c := dialProxy(t, sock)
	io.WriteString(c, "GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(msg), "the guest is gone") {
		t.Fatalf("got %d %s", resp.StatusCode, msg)
	}
}

// The stream is opened with the first request whole (a body past maxFirst follows it),
// and a client that sends nothing costs no stream.
func TestDialFirstCarriesTheFirstRequest(t *testing.T) {
	dial, bodies := fakeEngine(t)
	var dials atomic.Int32
	var firstLen atomic.Int64
	sock := serveProxy(t, &Proxy{Logf: t.Logf, DialFirst: func(ctx context.Context, first []byte) (net.Conn, error) {
		dials.Add(1)
		firstLen.Store(int64(len(first)))
		return dialFirst(dial)(ctx, first)
	}})
	idle, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	idle.(*net.UnixConn).CloseWrite()
	if b, _ := io.ReadAll(idle); len(b) != 0 {
		t.Fatalf("a client that sent nothing got %q", b)
	}
	idle.Close()
	if n := dials.Load(); n != 0 {
		t.Fatalf("a client that sent nothing cost %d streams", n)
	}
	c := dialProxy(t, sock)
	body := `{"Image":"x","Labels":{"big":"` + strings.Repeat("z", 3*maxFirst) + `"}}`
	io.WriteString(c, "POST /v1.45/containers/create HTTP/1.1\r\nHost: d\r\nContent-Length: "+itoa(len(body))+"\r\n\r\n"+body)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("create: %v %v", resp, err)
	}
	select {
	case got := <-bodies:
		if got != body {
			t.Fatalf("the engine got %d bytes of a %d-byte body", len(got), len(body))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the engine never got the create")
	}
	if dials.Load() != 1 || firstLen.Load() == 0 || firstLen.Load() > maxFirst {
		t.Fatalf("%d dials, %d bytes sent with the first; want 1 and 1..%d", dials.Load(), firstLen.Load(), maxFirst)
	}
}
