//go:build !windows

package main

import (
	"os"
	"os/exec"
	"syscall"
)

// detach puts the host agent in its own session so that closing the terminal (or the
// tray app) that started it does not stop the machine.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Stdin = nil
}

// fileSizes returns a file's apparent size and the bytes it occupies on disk.
func fileSizes(p string) (int64, int64) {
	st, err := os.Stat(p)
	if err != nil {
		return 0, 0
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return st.Size(), sys.Blocks * 512
	}
	return st.Size(), st.Size()
}
