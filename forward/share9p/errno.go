package share9p

import (
	"errors"
	"syscall"

	"github.com/hugelgupf/p9/linux"
)

// errno turns a host error into the Linux errno the guest understands: macOS numbers
// errnos differently and Windows has none, so a raw host error would reach the guest as
// another error or as EIO.
func errno(err error) error {
	if err == nil {
		return nil
	}
	var e linux.Errno
	if errors.As(err, &e) {
		return e
	}
	if e, ok := hostErrno(err); ok {
		return e
	}
	return linux.ExtractErrno(err)
}

// errnoPair is a host error and the Linux errno it is to the guest.
type errnoPair struct {
	host  syscall.Errno
	guest linux.Errno
}

// hostErrno finds err's host errno in the platform's errnos.
func hostErrno(err error) (linux.Errno, bool) {
	var e syscall.Errno
	if !errors.As(err, &e) {
		return 0, false
	}
	for _, p := range errnos {
		if p.host == e {
			return p.guest, true
		}
	}
	return 0, false
}
