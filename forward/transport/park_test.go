package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingDialer is dialer that counts the raw connections it makes.
func countingDialer(addr func() string, secret []byte, parked int) (*Client, *atomic.Int32) {
	var n atomic.Int32
	return &Client{Secret: secret, Parked: parked, Raw: func(ctx context.Context) (net.Conn, error) {
		n.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr())
	}}, &n
}

// cuttable starts a server and returns a client of it, parking parked streams, whose
// medium can be cut: while cut is set, nothing listens where it connects.
func cuttable(t *testing.T, parked int) (c *Client, cut *atomic.Bool, dials *atomic.Int32, lines func() []string) {
	s, _ := NewSecret()
	addr, lines := serveWith(t, s, ServeOptions{})
	cut = new(atomic.Bool)
	c, dials = countingDialer(func() string {
		if cut.Load() {
			return "127.0.0.1:1"
		}
		return addr
	}, s, parked)
	return c, cut, dials, lines
}

func parkedCount(c *Client) int { return c.parked.count(ServicePark) }

func waitParked(t *testing.T, c *Client, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for parkedCount(c) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams parked, want %d", parkedCount(c), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func echo(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	io.WriteString(c, msg)
	c.(*net.TCPConn).CloseWrite()
	b, _ := io.ReadAll(c)
	c.Close()
	if string(b) != msg {
		t.Fatalf("echo returned %q, want %q", b, msg)
	}
}

// After the first Dial, streams come from the parked pool: no new connection is made
// for them until the pool is topped up, and each still reaches its service.
func TestParkedStreamsServeDials(t *testing.T) {
	c, blocked, raw, lines := cuttable(t, 2)
	defer c.Close()
	echoThenPark(t, c, "first")
	// With the medium cut, the two parked streams still serve two dials, and a third
	// has none left.
	blocked.Store(true)
	for i := range 2 {
		conn, err := c.Dial(context.Background(), "echo")
		if err != nil {
			t.Fatalf("parked dial %d: %v", i, err)
		}
		echo(t, conn, "parked")
	}
	if conn, err := c.Dial(context.Background(), "echo"); err == nil {
		conn.Close()
		t.Fatal("a third dial succeeded with the medium cut and two streams parked")
	}
	blocked.Store(false)
	// Top-ups that failed while the medium was cut are tried again by the next Dial.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		c.parked.mu.Lock()
		filling := c.parked.filling[ServicePark]
		c.parked.mu.Unlock()
		if filling == 0 || time.Now().After(deadline) {
			break
		}
	}
	conn, err := c.Dial(context.Background(), "echo")
	if err != nil {
		t.Fatal(err)
	}
	echo(t, conn, "again")
	// A parked stream asked for an unknown service is refused with the reason, and no
	// fresh connection is tried for it.
	waitParked(t, c, 2)
	before := raw.Load()
	_, err = c.Dial(context.Background(), "nope")
	var refused *RefusedError
	if !errors.As(err, &refused) || !strings.Contains(err.Error(), "no such service") {
		t.Fatalf("unknown service on a parked stream: %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	if got := raw.Load() - before; got != 1 {
		t.Fatalf("%d connections made after a refusal on a parked stream, want 1 (the top-up)", got)
	}
	if l := lines(); len(l) != 0 {
		t.Fatalf("parking logged %q", l)
	}
}

// A parked stream cannot be parked again, nor named by a peer without the secret: a
// stranger's connection never gets as far as parking.
func TestParkNeedsTheSecret(t *testing.T) {
	s, _ := NewSecret()
	other, _ := NewSecret()
	addr, _ := serveWith(t, s, ServeOptions{})
	c, _ := countingDialer(func() string { return addr }, other, 2)
	defer c.Close()
	if _, err := c.Dial(context.Background(), "echo"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("wrong secret: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	if n := parkedCount(c); n != 0 {
		t.Fatalf("%d streams parked with the wrong secret", n)
	}
	good, _ := countingDialer(func() string { return addr }, s, 0)
	conn, err := good.Dial(context.Background(), ServicePark)
	if err != nil {
		t.Fatal(err)
	}
	if err := unpark(context.Background(), conn, ServicePark, nil); err == nil {
		t.Fatal("a parked stream was parked again")
	}
	conn.Close()
}

// Streams parked on a peer that went away (its agent restarted) are found dead on use
// and the dial goes to the new peer.
func TestDeadParkedStreamsDialAfresh(t *testing.T) {
	c := parkedThenRestarted(t, nil)
	for i := range 3 {
		conn, err := c.Dial(context.Background(), "echo")
		if err != nil {
			t.Fatalf("dial %d after the peer restarted: %v", i, err)
		}
		echo(t, conn, "two")
	}
}

// echoThenPark has c carry one echo and then keep two streams parked.
func echoThenPark(t *testing.T, c *Client, msg string) {
	t.Helper()
	conn, err := c.Dial(context.Background(), "echo")
	if err != nil {
		t.Fatal(err)
	}
	echo(t, conn, msg)
	waitParked(t, c, 2)
}

// parkedThenRestarted is a client with streams parked on an echo peer that then went
// away (closing the listener and every parked stream on its side), and a new peer at a
// new address. served counts the first peer's streams.
func parkedThenRestarted(t *testing.T, served *atomic.Int32) *Client {
	t.Helper()
	s, _ := NewSecret()
	ln1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx1, stop1 := context.WithCancel(context.Background())
	route := func(string) (Handler, error) {
		return func(_ context.Context, _ string, c net.Conn) {
			if served != nil {
				served.Add(1)
			}
			io.Copy(c, c)
			c.Close()
		}, nil
	}
	go Serve(ctx1, ln1, s, route, t.Logf)
	var addr atomic.Value
	addr.Store(ln1.Addr().String())
	c, _ := countingDialer(func() string { return addr.Load().(string) }, s, 2)
	t.Cleanup(func() { c.Close() })
	echoThenPark(t, c, "one")
	stop1()
	addr2, _ := serveWith(t, s, ServeOptions{})
	addr.Store(addr2)
	time.Sleep(50 * time.Millisecond)
	return c
}

// A server that predates parking refuses it; the client then dials every stream afresh.
func TestPeerWithoutParking(t *testing.T) {
	s, _ := NewSecret()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go AcceptLoop(context.Background(), ln, func(conn net.Conn) {
		service, err := Accept(conn, s)
		if err != nil || service != "echo" {
			Refuse(conn, "unknown service")
			conn.Close()
			return
		}
		Grant(conn)
		io.Copy(conn, conn)
		conn.Close()
	})
	c, _ := countingDialer(func() string { return ln.Addr().String() }, s, 2)
	defer c.Close()
	for range 3 {
		conn, err := c.Dial(context.Background(), "echo")
		if err != nil {
			t.Fatal(err)
		}
		echo(t, conn, "old")
	}
	time.Sleep(50 * time.Millisecond)
	c.parked.mu.Lock()
	off := c.parked.off[ServicePark]
	c.parked.mu.Unlock()
	if !off || parkedCount(c) != 0 {
		t.Fatalf("parking still on (%v) with %d parked against a peer that refuses it", off, parkedCount(c))
	}
}

// A parked stream never named is closed by the server after ParkedIdle: a client that
// vanished without closing (a restored snapshot) leaves nothing behind for long.
func TestUnnamedParkedStreamsExpire(t *testing.T) {
	s, _ := NewSecret()
	addr, _ := serveWith(t, s, ServeOptions{ParkedIdle: 200 * time.Millisecond})
	c, _ := countingDialer(func() string { return addr }, s, 0)
	conn, err := c.Dial(context.Background(), ServicePark)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("an unnamed parked stream was not closed by the server: %v", err)
	}
}
