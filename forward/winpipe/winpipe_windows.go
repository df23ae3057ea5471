package winpipe

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"time"

	"github.com/Microsoft/go-winio"
	"golang.org/x/sys/windows"
)

// currentUserSID is the SID of the user this process runs as.
func currentUserSID() (string, error) {
	u, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		return "", fmt.Errorf("winpipe: current user: %w", err)
	}
	return u.User.Sid.String(), nil
}

// Listen creates the named pipe path for the current user only.
func Listen(path string) (net.Listener, error) {
	sid, err := currentUserSID()
	if err != nil {
		return nil, err
	}
	sddl, err := SDDL(sid)
	if err != nil {
		return nil, err
	}
	l, err := winio.ListenPipe(path, &winio.PipeConfig{
		SecurityDescriptor: sddl,
		// Message mode is what makes CloseWrite reach the client as EOF: Docker clients
		// half-close hijacked streams (attach, exec) and would hang without it.
		MessageMode:      true,
		InputBufferSize:  64 << 10,
		OutputBufferSize: 64 << 10,
	})
	if err != nil {
		return nil, fmt.Errorf("winpipe: listen on %s: %w", path, err)
	}
	return l, nil
}

// Free reports whether nobody serves path, so that Skiff may claim it. A pipe that
// exists but is busy counts as claimed.
func Free(path string) bool {
	timeout := 200 * time.Millisecond
	c, err := winio.DialPipe(path, &timeout)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, fs.ErrNotExist)
}
