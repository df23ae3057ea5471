package hostenv

import (
	"errors"
	"io/fs"
	"os"
)

// pipeExists uses the fact that opening a pipe's attributes succeeds only while a
// server holds an instance of it.
func pipeExists(name string) (bool, error) {
	_, err := os.Stat(name)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	// A busy pipe (all instances connected) still exists.
	return true, nil
}
