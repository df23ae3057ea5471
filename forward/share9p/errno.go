package share9p

import (
	"errors"

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
