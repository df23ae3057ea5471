//go:build linux

package handoff

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// send is the guest agent's side (forward/guest): one datagram with the socket in it.
func send(t *testing.T, path string, data []byte, fds ...int) {
	t.Helper()
	s, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(s)
	var oob []byte
	if len(fds) > 0 {
		oob = syscall.UnixRights(fds...)
	}
	if err := syscall.Sendmsg(s, data, oob, &syscall.SockaddrUnix{Name: path}, 0); err != nil {
		t.Fatal(err)
	}
}

func fdOf(t *testing.T, c syscall.Conn) int {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	raw.Control(func(f uintptr) { fd = int(f) })
	return fd
}

// echo checks that what the client writes reaches the handed-over end and back, and that
// the handed-over end's half-close reaches the client as the end of its input.
func echo(t *testing.T, client, served net.Conn) {
	t.Helper()
	client.SetDeadline(time.Now().Add(10 * time.Second))
	served.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := client.Write([]byte("GET /_ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(served, buf); err != nil || string(buf) != "GET /_ping" {
		t.Fatalf("served end read %q, %v", buf, err)
	}
	if _, err := served.Write([]byte("OK")); err != nil {
		t.Fatal(err)
	}
	cw, ok := served.(interface{ CloseWrite() error })
	if !ok {
		t.Fatalf("%T has no CloseWrite", served)
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "OK" {
		t.Fatalf("client read %q, %v; want OK then EOF", got, err)
	}
	// Half-closed: the served end still reads.
	client.Write([]byte("more"))
	if _, err := io.ReadFull(served, buf[:4]); err != nil || string(buf[:4]) != "more" {
		t.Fatalf("after CloseWrite the served end read %q, %v", buf[:4], err)
	}
}

func TestHandOverTCP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "handoff.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for p, want := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != want {
			t.Fatalf("%s: %v, %v; want mode %v", p, st.Mode(), err, want)
		}
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	client, err := net.Dial("tcp", tl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	agentEnd, err := tl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	// A message without a socket is passed over; the next one is taken.
	send(t, path, []byte{1})
	send(t, path, []byte{1}, fdOf(t, agentEnd.(*net.TCPConn)))
	// The agent closes its descriptor at once; the engine's keeps the stream.
	agentEnd.Close()
	served, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer served.Close()
	if b, ok := served.(*batchConn); !ok {
		t.Fatalf("a handed-over stream is a %T, want *batchConn", served)
	} else if _, ok := b.Conn.(*net.TCPConn); !ok {
		t.Fatalf("a handed-over TCP stream is a %T, want *net.TCPConn", b.Conn)
	}
	if served.RemoteAddr().String() != client.LocalAddr().String() {
		t.Fatalf("remote address %v, want the client's %v", served.RemoteAddr(), client.LocalAddr())
	}
	echo(t, client, served)
}

// A stream of a family the net package cannot make a connection of (vsock, on the VMs of
// macOS and Windows) is served through its file; a unix socketpair stands in for it.
func TestHandOverFile(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[0]), "client")
	client, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	served, err := connOf(fds[1], false)
	if err != nil {
		t.Fatal(err)
	}
	defer served.Close()
	if b, ok := served.(*batchConn); !ok {
		t.Fatalf("got %T, want *batchConn", served)
	} else if _, ok := b.Conn.(*fileConn); !ok {
		t.Fatalf("got %T, want *fileConn", b.Conn)
	}
	echo(t, client, served)
	// Deadlines work through the runtime's poller.
	// The HTTP server tells its own deadline from a dead client this way.
	served.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err = served.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("read past the deadline: %T %v, want a net.Error that is a timeout", err, err)
	}
	served.SetReadDeadline(time.Time{})
	// The end of input is io.EOF itself.
	client.Close()
	if _, err := served.Read(make([]byte, 8)); err != io.EOF {
		t.Fatalf("read after the peer closed: %v, want io.EOF", err)
	}
}

func TestHandOverRefusesDatagrams(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fds[0])
	if c, err := connOf(fds[1], false); err == nil {
		c.Close()
		t.Fatal("a datagram socket was taken as a stream")
	}
}

func TestCloseEndsAccept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "handoff.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := l.Accept(); done <- err }()
	time.Sleep(20 * time.Millisecond)
	l.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("socket file left after Close: %v", err)
	}
	// A second engine binds the same path (a stale file is replaced).
	os.WriteFile(path, nil, 0o600)
	l2, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	l2.Close()
}
