//go:build !windows

package hostenv

import "errors"

func pipeExists(string) (bool, error) {
	return false, errors.New("named pipes exist only on Windows")
}
