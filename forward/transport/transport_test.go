package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func serve(t *testing.T, secret []byte) (addr string, refused func() int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var mu sync.Mutex
	n := 0
	route := func(service string) (Handler, error) {
		if service != "echo" {
			return nil, errors.New("no such service")
		}
		return func(_ context.Context, _ string, c net.Conn) { io.Copy(c, c); c.Close() }, nil
	}
	logf := func(f string, a ...any) {
		if strings.Contains(f, "refused") {
			mu.Lock()
			n++
			mu.Unlock()
		}
	}
	go Serve(ctx, ln, secret, route, logf)
	return ln.Addr().String(), func() int { mu.Lock(); defer mu.Unlock(); return n }
}

func dialer(addr string, secret []byte) *Client {
	return &Client{Secret: secret, Raw: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}}
}

func TestAuthenticatedStream(t *testing.T) {
	s, _ := NewSecret()
	addr, _ := serve(t, s)
	c, err := dialer(addr, s).Dial(context.Background(), "echo")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "hello")
	c.(*net.TCPConn).CloseWrite()
	b, _ := io.ReadAll(c)
	if string(b) != "hello" {
		t.Fatalf("echo returned %q", b)
	}
}

func TestWrongSecretIsRefusedAndLogged(t *testing.T) {
	s, _ := NewSecret()
	other, _ := NewSecret()
	addr, refused := serve(t, s)
	if _, err := dialer(addr, other).Dial(context.Background(), "echo"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("a client with the wrong secret got %v", err)
	}
	// A raw stranger that just writes bytes is refused too, and logged.
	c, _ := net.Dial("tcp", addr)
	io.WriteString(c, strings.Repeat("x", 200))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.ReadAll(c)
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for refused() < 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if refused() < 1 {
		t.Fatal("unauthenticated connections were not logged")
	}
}

func TestUnknownServiceIsRefusedWithReason(t *testing.T) {
	s, _ := NewSecret()
	addr, _ := serve(t, s)
	_, err := dialer(addr, s).Dial(context.Background(), "nope")
	if err == nil || !strings.Contains(err.Error(), "no such service") {
		t.Fatalf("got %v", err)
	}
}
