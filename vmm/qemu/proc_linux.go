package qemu

import (
	"os/exec"
	"runtime"
	"syscall"
)

// startChild starts QEMU so that it dies with the host agent, even on kill -9: a VM must
// never outlive the process that owns its network and disks. Pdeathsig fires when the
// starting thread exits, so the start happens on a thread that is never released.
func startChild(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- cmd.Start()
		select {} // keep this thread: its exit would kill QEMU
	}()
	return <-errc
}
