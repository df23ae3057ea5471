package hostports

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/forward"
)

// echoGuest answers UDP streams with an echo of each datagram. Streams to a target
// containing "stall" hang in Dial until ctx ends, as a slow handshake would. A stream
// counts as open from Dial until the caller closes it.
type echoGuest struct {
	open atomic.Int32 // streams open now
	max  atomic.Int32 // most open at once
}

// countedConn uncounts its stream once, when the caller closes it.
type countedConn struct {
	net.Conn
	once sync.Once
	open *atomic.Int32
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}

func (g *echoGuest) Dial(ctx context.Context, service string) (net.Conn, error) {
	if strings.Contains(service, "stall") {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	c, s := net.Pipe()
	n := g.open.Add(1)
	for m := g.max.Load(); n > m && !g.max.CompareAndSwap(m, n); m = g.max.Load() {
	}
	go func() {
		defer s.Close()
		buf := make([]byte, 65535)
		for {
			n, err := forward.ReadDatagram(s, buf)
			if err != nil {
				return
			}
			if forward.WriteDatagram(s, buf[:n]) != nil {
				return
			}
		}
	}()
	return &countedConn{Conn: c, open: &g.open}, nil
}

func serveUDPTest(t *testing.T, m *Manager, target string) net.Addr {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.serveUDP(ctx, pc, want{proto: "udp", port: 1, target: target}); close(done) }()
	t.Cleanup(func() { cancel(); pc.Close(); <-done })
	return pc.LocalAddr()
}

func udpClient(t *testing.T, to net.Addr) net.Conn {
	c, err := net.Dial("udp4", to.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func echoes(c net.Conn, msg string) bool {
	buf := make([]byte, 100)
	for range 20 {
		c.Write([]byte(msg))
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, err := c.Read(buf); err == nil && string(buf[:n]) == msg {
			return true
		}
	}
	return false
}

// A client whose stream is slow to open holds up no other client: the read loop does not
// dial.
func TestUDPSlowFlowBlocksNoOther(t *testing.T) {
	guest := &echoGuest{}
	m := &Manager{Guest: &stallFirst{g: guest}, Logf: t.Logf}
	addr := serveUDPTest(t, m, "10.0.0.1:53")
	slow, fast := udpClient(t, addr), udpClient(t, addr)
	slow.Write([]byte("first")) // its dial never ends
	time.Sleep(50 * time.Millisecond)
	if !echoes(fast, "second") {
		t.Fatal("a second client got no answer while the first one's stream was being opened")
	}
}

// stallFirst stalls the first stream it is asked for, then dials through.
type stallFirst struct {
	g    *echoGuest
	done atomic.Bool
}

func (s *stallFirst) Dial(ctx context.Context, service string) (net.Conn, error) {
	if s.done.CompareAndSwap(false, true) {
		service += "stall"
	}
	return s.g.Dial(ctx, service)
}

// No more than MaxUDPFlows streams are open at once; a new client replaces the one idle
// longest, and every client is still answered.
func TestUDPFlowsBounded(t *testing.T) {
	guest := &echoGuest{}
	var log logLines
	m := &Manager{Guest: guest, Logf: log.logf, MaxUDPFlows: 3}
	addr := serveUDPTest(t, m, "10.0.0.1:53")
	for i := range 10 {
		if c := udpClient(t, addr); !echoes(c, "hello") {
			t.Fatalf("client %d got no answer", i)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for guest.open.Load() > 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := guest.open.Load(); n > 3 {
		t.Fatalf("%d streams open for 10 clients, limit 3", n)
	}
	if guest.max.Load() > 3 {
		t.Fatalf("%d streams were open at once, limit 3", guest.max.Load())
	}
	if n := log.count("UDP clients at once"); n != 1 {
		t.Fatalf("%d log lines for the flow limit, want 1: %q", n, log.lines)
	}
}
