package engineproxy

import (
	"bufio"
	"context"
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
		case strings.HasSuffix(req.URL.Path, "/containers/create"):
			bodies <- string(body)
			io.WriteString(c, "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}")
		case strings.HasSuffix(req.URL.Path, "/attach"):
			io.WriteString(c, "HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
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
	sock := filepath.Join(t.TempDir(), "e.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go (&Proxy{Dial: dial, Paths: tb, Logf: t.Logf}).Serve(ctx, ln)
	return sock, bodies
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
	io.WriteString(c, "GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("next request after a refusal: %v %v", resp, err)
	}
}

func TestHijackIsRawWithHalfClose(t *testing.T) {
	sock, _ := startProxy(t)
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
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

func itoa(n int) string { return strconv.Itoa(n) }
