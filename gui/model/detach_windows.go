//go:build windows

package model

import (
	"os/exec"
	"syscall"
)

// createNoWindow keeps a console window from flashing up for the CLI.
const createNoWindow = 0x08000000

func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{HideWindow: true, CreationFlags: createNoWindow}
}
