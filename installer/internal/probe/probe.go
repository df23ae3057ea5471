// Package probe asks a unix socket whether something listens on it and whether that
// something is a container engine. It is shared by installer and doctor.
package probe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"time"
)

// ErrNoListener means the socket file exists but nothing accepts on it (a stale socket).
var ErrNoListener = errors.New("no process is listening on the socket")

// DialUnix reports whether a listener accepts on path.
func DialUnix(ctx context.Context, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%s: %w", path, ErrNoListener)
		}
		return fmt.Errorf("dial %s: %w", path, err)
	}
	return c.Close()
}

// PingUnix sends the engine API's GET /_ping over path and wants 200.
func PingUnix(ctx context.Context, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%s: %w", path, ErrNoListener)
		}
		return fmt.Errorf("dial %s: %w", path, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := fmt.Fprint(c, "GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"); err != nil {
		return fmt.Errorf("ping %s: %w", path, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return fmt.Errorf("ping %s: not a container engine API: %w", path, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ping %s: engine answered %s", path, resp.Status)
	}
	return nil
}
