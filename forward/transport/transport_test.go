package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func serve(t *testing.T, secret []byte) (addr string, refused func() int) {
	addr, lines := serveWith(t, secret, ServeOptions{})
	return addr, func() int {
		n := 0
		for _, l := range lines() {
			if strings.Contains(l, "refused") {
				n++
			}
		}
		return n
	}
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

// serveWith is serve with options and every log line recorded.
func serveWith(t *testing.T, secret []byte, o ServeOptions) (addr string, lines func() []string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var mu sync.Mutex
	var log []string
	logf := func(f string, a ...any) {
		mu.Lock()
		log = append(log, fmt.Sprintf(f, a...))
		mu.Unlock()
	}
	route := func(service string) (Handler, error) {
		if service != "echo" {
			return nil, errors.New("no such service")
		}
		return func(_ context.Context, _ string, c net.Conn) { io.Copy(c, c); c.Close() }, nil
	}
	go ServeWith(ctx, ln, secret, route, logf, o)
	return ln.Addr().String(), func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(log) }
}

// A stream of refused peers costs one log line per period, not one each.
func TestRefusalsLoggedInSummary(t *testing.T) {
	s, other := make([]byte, SecretLen), make([]byte, SecretLen)
	other[0] = 1
	addr, lines := serveWith(t, s, ServeOptions{LogEvery: 300 * time.Millisecond})
	for range 50 {
		if _, err := dialer(addr, other).Dial(context.Background(), "echo"); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("wrong secret: %v", err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if l := lines(); len(l) != 1 || !strings.Contains(l[0], "refused connection from 127.0.0.1") {
		t.Fatalf("50 refusals logged as %q, want the first only so far", l)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(lines()) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if l := lines(); len(l) != 2 || !strings.Contains(l[1], "refused 49 more connections") {
		t.Fatalf("summary: %q", l)
	}
}

// Handshakes in progress are bounded: silent peers holding every slot make a real client
// wait, and one of them leaving lets it in.
func TestPendingHandshakesBounded(t *testing.T) {
	s, _ := NewSecret()
	addr, lines := serveWith(t, s, ServeOptions{MaxPending: 2})
	var silent []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if c, err := dialer(addr, s).Dial(ctx, "echo"); err == nil {
		c.Close()
		t.Fatal("a client was served while silent peers held every handshake slot")
	}
	if l := lines(); len(l) != 1 || !strings.Contains(l[0], "2 handshakes pending") {
		t.Fatalf("log: %q", l)
	}
	for _, c := range silent {
		c.Close()
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dialer(addr, s).Dial(ctx, "echo")
	if err != nil {
		t.Fatalf("once the silent peers left: %v", err)
	}
	c.Close()
}
