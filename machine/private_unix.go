//go:build !windows

package machine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// privateDir makes dir if it is missing and checks that it is a real folder (no symlink)
// owned by this user and closed to everyone else.
func privateDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	switch {
	case !st.IsDir():
		return fmt.Errorf("%s is not a folder (a symlink?): refusing to keep Skiff's sockets there", dir)
	case ok && int(sys.Uid) != os.Getuid():
		return fmt.Errorf("%s belongs to user %d, not to you: refusing to keep Skiff's sockets there (remove it, or set SKIFF_HOME to a shorter path)", dir, sys.Uid)
	case st.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("%s is open to other users (%v): refusing to keep Skiff's sockets there", dir, st.Mode().Perm())
	}
	return nil
}
