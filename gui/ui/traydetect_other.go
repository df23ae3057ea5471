//go:build !linux

package ui

import "context"

// TrayAvailable: macOS's menu bar and Windows' notification area always exist.
func TrayAvailable(ctx context.Context) (bool, string) { return true, "" }
