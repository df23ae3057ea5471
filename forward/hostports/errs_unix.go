//go:build !windows

package hostports

import "syscall"

var errAddrInUse = syscall.EADDRINUSE
