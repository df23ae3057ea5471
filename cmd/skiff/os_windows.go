package main

import (
	"os"
	"os/exec"
	"syscall"
)

const (
	createNewProcessGroup = 0x00000200
	detachedProcess       = 0x00000008
)

// detach starts the host agent without a console, outside the CLI's process group.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{CreationFlags: createNewProcessGroup | detachedProcess, HideWindow: true}
}

// fileSizes returns the apparent size twice: allocation needs a sparse-file query.
func fileSizes(p string) (int64, int64) {
	st, err := os.Stat(p)
	if err != nil {
		return 0, 0
	}
	return st.Size(), st.Size()
}
