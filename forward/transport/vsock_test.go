package transport

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// A dial that cannot be cancelled is abandoned when the context ends, and the connection
// it makes afterwards is closed rather than leaked.
func TestDialContext(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	release := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := DialContext(ctx, func() (net.Conn, error) { <-release; return a, nil })
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want the context's error", err)
	}
	close(release)
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	var ne net.Error
	if _, err := b.Read(make([]byte, 1)); err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("the late connection was not closed: %v", err)
	}

	c, err := DialContext(context.Background(), func() (net.Conn, error) { return nil, errors.New("refused") })
	if c != nil || err == nil || err.Error() != "refused" {
		t.Fatalf("a failed dial: %v %v", c, err)
	}
}
