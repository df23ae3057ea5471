//go:build linux

// Command skiff-wslinit is the WSL stand-in's PID 1 (package wslinit). Build it static:
// CGO_ENABLED=0 go build ./vmm/qemu/internal/wslinit/skiff-wslinit
package main

import "github.com/skiff-dev/skiff/vmm/qemu/internal/wslinit"

func main() { wslinit.Main() }
