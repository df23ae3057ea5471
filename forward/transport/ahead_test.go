package transport

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// After the first Dial, a service's streams come already open: a Dial of it makes no
// connection and costs no round trip, and each still reaches the service with its first
// bytes.
func TestAheadStreamsServeDials(t *testing.T) {
	c, blocked, _, _ := cuttable(t, 0)
	c.Ahead = map[string]int{"echo": 2}
	defer c.Close()
	conn, err := c.DialFirst(context.Background(), "echo", []byte("o"))
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("ne"))
	conn.(*net.TCPConn).CloseWrite()
	if b, _ := io.ReadAll(conn); string(b) != "one" {
		t.Fatalf("echo returned %q, want the first bytes and the rest, one", b)
	}
	conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for c.ahead.count("echo") != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams opened ahead, want 2", c.ahead.count("echo"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	blocked.Store(true)
	conn, err = c.DialFirst(context.Background(), "echo", []byte("two-"))
	if err != nil {
		t.Fatalf("a Dial with streams open ahead connected anew: %v", err)
	}
	conn.Write([]byte("three"))
	conn.(*net.TCPConn).CloseWrite()
	b := make([]byte, 9)
	if _, err := io.ReadFull(conn, b); err != nil || string(b) != "two-three" {
		t.Fatalf("read %q, %v", b, err)
	}
	conn.Close()
}

// A stream opened ahead that the service closed meanwhile is passed over: the Dial gets a
// fresh one, and what it sends reaches the service.
func TestAheadDeadStreamPassedOver(t *testing.T) {
	s, _ := NewSecret()
	addr, _ := serveWith(t, s, ServeOptions{})
	c, _ := countingDialer(func() string { return addr }, s, 0)
	defer c.Close()
	// A stream granted and then closed by the peer, as dockerd closes a silent one.
	dead, err := c.Dial(context.Background(), "echo")
	if err != nil {
		t.Fatal(err)
	}
	dead.(*net.TCPConn).CloseWrite() // the echo service then closes its end
	time.Sleep(100 * time.Millisecond)
	c.Ahead = map[string]int{"echo": 1}
	c.ahead.conns = map[string][]pooledConn{"echo": {{dead, time.Now()}}}
	c.ahead.filling, c.ahead.off = map[string]int{}, map[string]bool{}
	conn, err := c.DialFirst(context.Background(), "echo", []byte("ping"))
	if err != nil {
		t.Fatal(err)
	}
	if conn == dead {
		t.Fatal("the closed stream was used")
	}
	conn.(*net.TCPConn).CloseWrite()
	b := make([]byte, 4)
	if _, err := io.ReadFull(conn, b); err != nil || string(b) != "ping" {
		t.Fatalf("read %q, %v", b, err)
	}
	conn.Close()
}
