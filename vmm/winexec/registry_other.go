//go:build !windows

package winexec

import "errors"

var errNotWindows = errors.New("the Windows registry exists only on Windows")

// WindowsRegistry is the real registry; elsewhere every call fails.
type WindowsRegistry struct{}

func (WindowsRegistry) SubKeys(string) ([]string, error)       { return nil, errNotWindows }
func (WindowsRegistry) KeyExists(string) (bool, error)         { return false, errNotWindows }
func (WindowsRegistry) SetString(string, string, string) error { return errNotWindows }

// Elevated reports whether this process runs as administrator; never, off Windows.
func Elevated() bool { return false }
