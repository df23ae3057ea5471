//go:build !windows

package machine

import (
	"os/exec"
	"syscall"
)

// detach puts the host agent in its own session so that closing the terminal (or the
// tray app) that started it does not stop the machine.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Stdin = nil
}
