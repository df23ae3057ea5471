//go:build !windows

package model

import (
	"os/exec"
	"syscall"
)

// detach puts the CLI in its own process group so a signal to the tray's group (Ctrl-C
// in the terminal that launched it) does not reach a machine being started.
func detach(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} }
