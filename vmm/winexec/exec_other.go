//go:build !windows

package winexec

import "os/exec"

func hideWindow(cmd *exec.Cmd) {}
