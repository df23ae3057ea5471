//go:build linux

package handoff

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// tcpPair is a loopback TCP stream: the engine's end batched, and the client's.
func tcpPair(t *testing.T) (served *batchConn, client net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); c.Close() })
	client.SetDeadline(time.Now().Add(20 * time.Second))
	return newBatchConn(c), client
}

// Writers on several goroutines: each write arrives whole, each writer's in its order,
// and nothing is lost when the stream closes right after.
func TestBatchKeepsEveryWrite(t *testing.T) {
	served, client := tcpPair(t)
	const writers, each = 4, 2000
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				// Some writes above batchMax: they go out by themselves, in order.
				rec := fmt.Appendf(nil, "<%d:%06d:", w, i)
				if i%500 == 0 {
					rec = append(rec, bytes.Repeat([]byte{'.'}, batchMax)...)
				}
				if _, err := served.Write(append(rec, '>')); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	got := make(chan []byte)
	go func() { b, _ := io.ReadAll(client); got <- b }()
	wg.Wait()
	if err := served.Close(); err != nil {
		t.Fatal(err)
	}
	b := <-got
	next := make([]int, writers)
	for len(b) > 0 {
		end := bytes.IndexByte(b, '>')
		var w, i int
		if end < 0 || b[0] != '<' {
			t.Fatalf("a write arrived cut or mixed with another: %.40q", b)
		}
		if _, err := fmt.Sscanf(string(b[1:min(end, 12)]), "%d:%06d:", &w, &i); err != nil || w >= writers {
			t.Fatalf("a write arrived cut or mixed with another: %.40q", b)
		}
		if i != next[w] {
			t.Fatalf("writer %d: write %d arrived, want %d", w, i, next[w])
		}
		next[w]++
		b = b[end+1:]
	}
	for w, n := range next {
		if n != each {
			t.Fatalf("writer %d: %d writes arrived, want %d", w, n, each)
		}
	}
}

// slowConn takes every write whole and slowly, keeping what each was given.
type slowConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
	err    error // returned by every write after the first
}

func (c *slowConn) Write(p []byte) (int, error) {
	time.Sleep(20 * time.Millisecond)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, bytes.Clone(p))
	if c.err != nil && len(c.writes) > 1 {
		return 0, c.err
	}
	return len(p), nil
}

func (c *slowConn) Close() error                     { return nil }
func (c *slowConn) SetWriteDeadline(time.Time) error { return nil }
func (c *slowConn) LocalAddr() net.Addr              { return fileAddr{} }

// What is written while a send is under way goes out together in the next send.
func TestBatchSendsTogether(t *testing.T) {
	sc := &slowConn{}
	c := newBatchConn(sc)
	var want []byte
	for i := 0; i < 100; i++ {
		rec := fmt.Appendf(nil, "message %d\n", i)
		want = append(want, rec...)
		if n, err := c.Write(rec); n != len(rec) || err != nil {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got := bytes.Join(sc.writes, nil); !bytes.Equal(got, want) {
		t.Fatalf("sent %q, want %q", got, want)
	}
	// The first write goes out alone; the 99 written during its send go out in one.
	if len(sc.writes) > 3 {
		t.Fatalf("100 writes made %d sends, want at most 3", len(sc.writes))
	}
}

// A lone write goes out without waiting for another or for Close.
func TestBatchLoneWriteGoesOut(t *testing.T) {
	served, client := tcpPair(t)
	if _, err := served.Write([]byte("HTTP/1.1 200 OK")); err != nil {
		t.Fatal(err)
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 15)
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "HTTP/1.1 200 OK" {
		t.Fatalf("read %q, %v", buf, err)
	}
}

// CloseWrite sends what is buffered before the end of output, and the stream still reads.
func TestBatchCloseWriteSendsFirst(t *testing.T) {
	served, client := tcpPair(t)
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB, in 4 KiB writes
	for p := want; len(p) > 0; p = p[4096:] {
		if _, err := served.Write(p[:4096]); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan []byte)
	go func() { b, _ := io.ReadAll(client); got <- b }()
	if err := served.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("read %d bytes before the end of output, want the %d written", len(b), len(want))
	}
	client.Write([]byte("x"))
	served.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(served, make([]byte, 1)); err != nil {
		t.Fatalf("read after CloseWrite: %v", err)
	}
}

// A failed send fails the writes after it.
func TestBatchSendErrorSticks(t *testing.T) {
	sc := &slowConn{err: syscall.EPIPE}
	c := newBatchConn(sc)
	c.Write([]byte("a"))
	c.Write([]byte("b"))
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = c.Write([]byte("c"))
		time.Sleep(5 * time.Millisecond)
	}
	if !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("writes after a failed send: %v, want EPIPE", err)
	}
	if _, err := c.Write([]byte("d")); !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("the next write: %v, want EPIPE", err)
	}
	if err := c.CloseWrite(); !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("CloseWrite: %v, want EPIPE", err)
	}
}

// Close gives up on a peer that reads nothing after closeWait, and closes.
func TestBatchCloseGivesUp(t *testing.T) {
	defer func(d time.Duration) { closeWait = d }(closeWait)
	closeWait = 200 * time.Millisecond
	served, _ := tcpPair(t)
	// More than the kernel's buffers on both ends hold, written without blocking here.
	chunk := make([]byte, 64<<10)
	written := make(chan struct{})
	go func() {
		defer close(written)
		for i := 0; i < 1024; i++ {
			if _, err := served.Write(chunk); err != nil {
				return
			}
		}
	}()
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	served.Close()
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Close took %v with a peer that reads nothing", d)
	}
	select {
	case <-written:
	case <-time.After(10 * time.Second):
		t.Fatal("a write waiting for room did not end when the stream closed")
	}
	if _, err := served.Write([]byte("x")); err == nil {
		t.Fatal("a write after Close succeeded")
	}
}
