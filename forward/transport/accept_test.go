package transport

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// failingListener fails its first accepts with errs, then hands out a real listener's.
type failingListener struct {
	net.Listener
	errs []error
}

func (l *failingListener) Accept() (net.Conn, error) {
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		return nil, err
	}
	return l.Listener.Accept()
}

// A socket whose accept fails once for lack of descriptors keeps serving: the engine's
// socket must not die for a burst of clients.
func TestAcceptLoopOutlivesPassingErrors(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &failingListener{Listener: inner, errs: []error{
		&net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)},
		&net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.ECONNABORTED)},
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	served := make(chan struct{}, 1)
	go func() {
		done <- AcceptLoop(ctx, ln, func(c net.Conn) { c.Close(); served <- struct{}{} })
	}()
	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-served:
	case err := <-done:
		t.Fatalf("the loop gave up on a passing accept error: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the connection was never handled")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("after ctx ended: %v", err)
	}
}

// A listener that fails for good ends the loop with its error.
func TestAcceptLoopEndsOnListenerError(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	broken := errors.New("listener broken")
	ln := &failingListener{Listener: inner, errs: []error{broken}}
	if err := AcceptLoop(context.Background(), ln, func(c net.Conn) { c.Close() }); !errors.Is(err, broken) {
		t.Fatalf("got %v, want the listener's error", err)
	}
}
