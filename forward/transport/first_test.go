package transport

import (
	"context"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// readEcho reads back len(msg) bytes of an echo and checks them.
func readEcho(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	b := make([]byte, len(msg))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, b); err != nil || string(b) != msg {
		t.Fatalf("echo returned %q, %v; want %q", b, err, msg)
	}
	c.SetReadDeadline(time.Time{})
}

// The bytes sent with the name reach the service first, then what is written after,
// on parked streams and on fresh ones.
func TestDialFirstSendsWithTheName(t *testing.T) {
	s, _ := NewSecret()
	addr, _ := serve(t, s)
	for _, parked := range []int{0, 2} {
		c, _ := countingDialer(func() string { return addr }, s, parked)
		for i := range 3 { // the first dial is fresh, the later ones parked where parking is on
			conn, err := c.DialFirst(context.Background(), "echo", []byte("first,"))
			if err != nil {
				t.Fatalf("parked %d, dial %d: %v", parked, i, err)
			}
			readEcho(t, conn, "first,")
			echo(t, conn, "then")
			if parked > 0 && i == 0 {
				waitParked(t, c, parked)
			}
		}
		c.Close()
	}
}

// A refused service gets its reason, with or without bytes sent along.
func TestDialFirstRefused(t *testing.T) {
	s, _ := NewSecret()
	addr, _ := serve(t, s)
	c, _ := countingDialer(func() string { return addr }, s, 2)
	defer c.Close()
	echoThenPark(t, c, "x")
	_, err := c.DialFirst(context.Background(), "nope", []byte("GET / HTTP/1.1\r\n\r\n"))
	if err == nil || !strings.Contains(err.Error(), "no such service") {
		t.Fatalf("a refused service with first bytes gave %v", err)
	}
}

// When the peer restarted, a parked stream it dropped is dialled afresh, and the bytes
// sent along reach the new peer's service exactly once.
func TestDialFirstAfterThePeerRestarted(t *testing.T) {
	var served atomic.Int32
	c := parkedThenRestarted(t, &served)
	conn, err := c.DialFirst(context.Background(), "echo", []byte("two"))
	if err != nil {
		t.Fatalf("dial after the peer restarted: %v", err)
	}
	conn.(*net.TCPConn).CloseWrite()
	b, _ := io.ReadAll(conn)
	conn.Close()
	if string(b) != "two" {
		t.Fatalf("the first bytes came back as %q, want them once", b)
	}
	if served.Load() != 1 {
		t.Fatalf("the old peer served %d streams, want 1", served.Load())
	}
}
