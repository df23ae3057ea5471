//go:build !windows

package winpipe

import (
	"fmt"
	"net"
)

// Listen fails: named pipes exist only on Windows.
func Listen(path string) (net.Listener, error) {
	return nil, fmt.Errorf("winpipe: listen on %s: %w", path, ErrWindowsOnly)
}

// Free is false: there is no pipe to claim off Windows.
func Free(path string) bool { return false }
