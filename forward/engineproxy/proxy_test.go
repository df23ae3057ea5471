package engineproxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/forward/pathmap"
)

// fakeEngine is a raw HTTP peer standing in for dockerd: it records create bodies and
// implements a hijacked echo endpoint that answers only after its input is closed.
func fakeEngine(t *testing.T) (dial func(context.Context) (net.Conn, error), bodies chan string) {
	bodies = make(chan string, 4)
	sock := filepath.Join(t.TempDir(), "engine.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveFake(c, bodies)
		}
	}()
	dial = func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}
	return dial, bodies
}

func serveFake(c net.Conn, bodies chan string) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, _ := io.ReadAll(req.Body)
		switch {
		case strings.Contains(req.URL.Path, "/containers/missing/"):
			msg := `{"message":"No such container: missing"}`
			io.WriteString(c, "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: "+itoa(len(msg))+"\r\n\r\n"+msg)
		case strings.HasSuffix(req.URL.Path, "/containers/create"):
			bodies <- string(body)
			io.WriteString(c, "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}")
		case strings.HasSuffix(req.URL.Path, "/attach") || strings.HasSuffix(req.URL.Path, "/start") && strings.Contains(req.URL.Path, "/exec/"):
			// As dockerd and Podman answer: 101 when asked to upgrade, else 200 with the
			// raw stream following.
			if req.Header.Get("Upgrade") != "" {
				io.WriteString(c, "HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
			} else {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\n\r\n")
			}
			// Echo the raw stream back after it ends: proves the hijack is raw both ways.
			data, _ := io.ReadAll(br)
			c.Write([]byte("echo:" + string(data)))
			return
		default:
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
		}
	}
}

func startProxy(t *testing.T) (string, chan string) {
	dial, bodies := fakeEngine(t)
	tb, err := pathmap.New([]pathmap.Share{{Host: "/Users/ann", Guest: "/mnt/ann"}}, pathmap.DefaultPassthrough)
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.Deny("/Users/ann/.local/share/skiff"); err != nil {
		t.Fatal(err)
	}
	// As the host agent has it: each stream opened with the client's first bytes.
	sock := serveProxy(t, &Proxy{Dial: dial, DialFirst: dialFirst(dial), Paths: tb, Logf: t.Logf})
	return sock, bodies
}

// dialFirst is Proxy.DialFirst over dial: the stream, then the bytes.
func dialFirst(dial func(context.Context) (net.Conn, error)) func(context.Context, []byte) (net.Conn, error) {
	return func(ctx context.Context, first []byte) (net.Conn, error) {
		c, err := dial(ctx)
		if err == nil {
			_, err = c.Write(first)
		}
		return c, err
	}
}

func TestCreateIsTranslated(t *testing.T) {
	sock, bodies := startProxy(t)
	c, _ := net.Dial("unix", sock)
	defer c.Close()
	body := `{"Image":"x","HostConfig":{"Binds":["/Users/ann/src:/src"]}}`
	io.WriteString(c, "POST /v1.45/containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: "+itoa(len(body))+"\r\n\r\n"+body)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("create: %v %v", resp, err)
	}
	select {
	case got := <-bodies:
		if !strings.Contains(got, `"/mnt/ann/src:/src"`) {
			t.Fatalf("engine received %s", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("engine never got the create")
	}
}

func TestUnsharedPathIsAnAPIError(t *testing.T) {
	sock, bodies := startProxy(t)
	c, _ := net.Dial("unix", sock)
	defer c.Close()
	body := `{"HostConfig":{"Binds":["/etc:/x"]}}`
	io.WriteString(c, "POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Length: "+itoa(len(body))+"\r\n\r\n"+body)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || !strings.Contains(string(msg), "not shared") || !strings.Contains(string(msg), "/Users/ann") {
		t.Fatalf("got %d %s", resp.StatusCode, msg)
	}
	if len(bodies) != 0 {
		t.Fatal("the refused create reached the engine")
	}
	// The connection stays usable for the next request.
	pingOK(t, c, br, "next request after a refusal")
}

// A bind of Skiff's own data is a 4xx with one line saying why, and never reaches the
// engine.
func TestDeniedBindIsAPIError(t *testing.T) {
	sock, bodies := startProxy(t)
	c, _ := net.Dial("unix", sock)
	defer c.Close()
	body := `{"HostConfig":{"Mounts":[{"Type":"bind","Source":"/Users/ann/.local/share/skiff/machines","Target":"/m"}]}}`
	io.WriteString(c, "POST /v1.45/containers/create HTTP/1.1\r\nHost: d\r\nContent-Length: "+itoa(len(body))+"\r\n\r\n"+body)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	var e struct{ Message string }
	json.NewDecoder(resp.Body).Decode(&e)
	if resp.StatusCode != 400 || !strings.Contains(e.Message, "/Users/ann/.local/share/skiff") ||
		!strings.Contains(e.Message, "never shared") || strings.Contains(e.Message, "\n") {
		t.Fatalf("got %d %q", resp.StatusCode, e.Message)
	}
	if len(bodies) != 0 {
		t.Fatal("the refused create reached the engine")
	}
}

func TestHijackIsRawWithHalfClose(t *testing.T) {
	sock, _ := startProxy(t)
	c := dialProxy(t, sock)
	io.WriteString(c, "POST /v1.45/containers/abc/attach?stream=1&stdin=1 HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("attach: %v %v", resp, err)
	}
	io.WriteString(c, "GET / HTTP/1.1 is not parsed here\n")
	c.(*net.UnixConn).CloseWrite() // stdin EOF
	rest, _ := io.ReadAll(br)
	if string(rest) != "echo:GET / HTTP/1.1 is not parsed here\n" {
		t.Fatalf("after the hijack got %q", rest)
	}
}

func dialProxy(t *testing.T, sock string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func itoa(n int) string { return strconv.Itoa(n) }

// A request whose headers never end is answered 431 in one line once they pass the
// bound, and never reaches the engine; headers just under it pass.
func TestOversizedHeaders(t *testing.T) {
	sock, bodies := startProxy(t)
	send := func(size int) (*http.Response, string) {
		c := dialProxy(t, sock)
		go func() {
			io.WriteString(c, "POST /containers/create HTTP/1.1\r\nHost: d\r\nX-Big: ")
			c.Write(bytes.Repeat([]byte("a"), size))
			body := `{"HostConfig":{"Binds":["/Users/ann/a:/a"]}}`
			io.WriteString(c, "\r\nContent-Length: "+itoa(len(body))+"\r\n\r\n"+body)
		}()
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%d bytes of headers: %v", size, err)
		}
		msg, _ := io.ReadAll(resp.Body)
		return resp, string(msg)
	}
	resp, msg := send(2 << 20)
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || !strings.Contains(msg, "headers are over") || strings.Count(msg, "\n") > 0 {
		t.Fatalf("2 MiB of headers: %d %s", resp.StatusCode, msg)
	}
	select {
	case b := <-bodies:
		t.Fatalf("the engine got %s", b)
	default:
	}
	if resp, msg := send(maxHeaderBytes - 100); resp.StatusCode != 201 {
		t.Fatalf("headers just under the bound: %d %s", resp.StatusCode, msg)
	}
}

// An upgrade request the engine answers without 101 leaves the connection HTTP: the
// next request is still read, translated and refused as usual, not passed on raw.
func TestNoRawModeWithout101(t *testing.T) {
	sock, bodies := startProxy(t)
	c := dialProxy(t, sock)
	br := bufio.NewReader(c)
	io.WriteString(c, "POST /v1.45/containers/missing/attach?stream=1&stdin=1 HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 404 {
		t.Fatalf("attach to a missing container: %v %v", resp, err)
	}
	io.ReadAll(resp.Body)
	body := `{"HostConfig":{"Binds":["/etc:/host-etc"]}}`
	io.WriteString(c, "POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Length: "+itoa(len(body))+"\r\n\r\n"+body)
	resp, err = http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 400 {
		t.Fatalf("create after a refused upgrade: %v %v", resp, err)
	}
	select {
	case b := <-bodies:
		t.Fatalf("the create went to the engine untranslated: %s", b)
	default:
	}
}

// A client that sends stream bytes right behind its upgrade request gets them to the
// engine once the engine has switched.
func TestBytesBeforeThe101Follow(t *testing.T) {
	sock, _ := startProxy(t)
	c := dialProxy(t, sock)
	io.WriteString(c, "POST /v1.45/containers/abc/attach?stream=1&stdin=1 HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\nearly bytes")
	c.(*net.UnixConn).CloseWrite()
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("attach: %v %v", resp, err)
	}
	if rest, _ := io.ReadAll(br); string(rest) != "echo:early bytes" {
		t.Fatalf("after the hijack got %q", rest)
	}
}

func TestCopySwitchHead(t *testing.T) {
	for in, want := range map[string]bool{
		"HTTP/1.1 101 UPGRADED\r\nUpgrade: tcp\r\n\r\nraw":                                                         true,
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching\r\nA: b\r\n\r\nraw":                                   true,
		"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n":                               true,
		"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\n\r\nraw":                    true,
		"HTTP/1.1 200 OK\r\ncontent-type: Application/vnd.docker.raw-stream; x=y\r\n\r\n":                          true,
		"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\nContent-Length: 0\r\n\r\n":          false,
		"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\nTransfer-Encoding: chunked\r\n\r\n": false,
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n":                                                false,
		"HTTP/1.1 404 Not Found\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n":                        false,
		"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n":                                                      false,
		"garbage\n\n":            false,
		"HTTP/1.1 101 no end":    false,
		"101 HTTP/1.1 x\r\n\r\n": false,
	} {
		var out bytes.Buffer
		br := bufio.NewReader(strings.NewReader(in))
		got, _ := copySwitchHead(&out, br)
		rest, _ := io.ReadAll(br)
		if got != want || out.String()+string(rest) != in {
			t.Errorf("%q: switched %v, copied %q then %q", in, got, out.String(), rest)
		}
	}
}

// Podman's client starts exec sessions and attaches without an Upgrade header, and the
// engine answers 200 with the stream following: the client's bytes after the request are
// the stream (stdin), not HTTP, and its half-close reaches the engine.
func TestHijackWithoutUpgradeHeader(t *testing.T) {
	for _, path := range []string{
		"/v5.4.0/libpod/exec/e1/start",
		"/v4.3.1/libpod/containers/abc/attach?stream=true&stdin=true",
		"/libpod/exec/e1/start",
		"/v1.41/containers/abc/attach?stream=1&stdin=1",
		"/v1.41/exec/e1/start",
	} {
		sock, _ := startProxy(t)
		c := dialProxy(t, sock)
		io.WriteString(c, "POST "+path+" HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", path, resp, err)
		}
		io.WriteString(c, "POST /containers/create HTTP/1.1\r\n is stdin\n")
		c.(*net.UnixConn).CloseWrite()
		if rest, _ := io.ReadAll(br); string(rest) != "echo:POST /containers/create HTTP/1.1\r\n is stdin\n" {
			t.Fatalf("%s: after the hijack got %q", path, rest)
		}
	}
}

// A libpod exec start the engine refuses leaves the connection HTTP.
func TestLibpodRefusedStaysHTTP(t *testing.T) {
	sock, _ := startProxy(t)
	c := dialProxy(t, sock)
	br := bufio.NewReader(c)
	io.WriteString(c, "POST /v5.4.0/libpod/containers/missing/attach?stream=true HTTP/1.1\r\nHost: d\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 404 {
		t.Fatalf("attach to a missing container: %v %v", resp, err)
	}
	io.ReadAll(resp.Body)
	pingOK(t, c, br, "next request after a refused attach")
}

func TestAsksToSwitch(t *testing.T) {
	for path, want := range map[string]bool{
		"/v5.4.0/libpod/exec/abc/start":        true,
		"/libpod/containers/abc/attach":        true,
		"/v4.3.1/libpod/containers/abc/attach": true,
		"/v1.45/containers/abc/attach":         true,
		"/session":                             true,
		"/v5.4.0/libpod/containers/abc/start":  false,
		"/v5.4.0/libpod/exec/abc/resize":       false,
		"/v5.4.0/libpod/containers/abc/logs":   false,
		"/v5.4.0/libpod/libpod/exec/abc/start": false,
		"/v1.45/containers/abc/attach/ws":      false,
	} {
		req, _ := http.NewRequest("POST", "http://d"+path, nil)
		if got := asksToSwitch(req); got != want {
			t.Errorf("%s: %v, want %v", path, got, want)
		}
	}
}

// The cheap pre-test lets through every path the hijack expression matches.
func TestMayHijackCoversHijackRE(t *testing.T) {
	for _, p := range []string{"/containers/x/attach", "/v1.43/containers/abc/attach", "/exec/e1/start",
		"/v1.41/libpod/exec/e1/start", "/libpod/containers/c/attach", "/session", "/v1.44/session", "/grpc", "/v1.44/grpc",
		"/_ping", "/containers/json", "/v1.43/containers/x/start", "/containers/x/attach/ws"} {
		if hijackRE.MatchString(p) && !mayHijack(p) {
			t.Errorf("%s matches hijackRE but mayHijack says no", p)
		}
	}
	if mayHijack("/_ping") || mayHijack("/v1.43/containers/json") {
		t.Error("mayHijack let a plain endpoint through")
	}
}

// pingOK sends GET /_ping on c and fails the test unless it is answered 200.
func pingOK(t *testing.T, c net.Conn, br *bufio.Reader, what string) {
	t.Helper()
	io.WriteString(c, "GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%s: %v %v", what, resp, err)
	}
	io.ReadAll(resp.Body)
}
