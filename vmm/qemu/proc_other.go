//go:build !linux

package qemu

import "os/exec"

// startChild starts QEMU. Without Pdeathsig the host agent kills a leftover VM from its
// pid file when it next starts.
func startChild(cmd *exec.Cmd) error { return cmd.Start() }
