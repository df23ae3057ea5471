package hostports

import "golang.org/x/sys/windows"

var errAddrInUse = windows.WSAEADDRINUSE
