package doctor

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/vmm/qemu"
)

func platformEnv(env *Env, home machine.Home) {
	env.ProbeKVM = func(timeout time.Duration) error {
		if err := qemu.ProbeKVM(timeout); err != nil {
			return err
		}
		// The one-instruction probe passes on some nested hosts where a real kernel
		// then hangs under KVM, so boot one when a guest kernel is cached.
		kernels, _ := filepath.Glob(filepath.Join(home.CacheDir(), "*", "*", "vmlinuz"))
		more, _ := filepath.Glob(filepath.Join(home.CacheDir(), "*", "vmlinuz"))
		kernels = append(kernels, more...)
		if len(kernels) == 0 || runtime.GOARCH != "amd64" {
			return nil
		}
		bin, err := exec.LookPath("qemu-system-x86_64")
		if err != nil {
			return nil
		}
		return probeKVMBoot(bin, kernels[0], 4*timeout)
	}
}

// probeKVMBoot boots kernel under KVM without a root disk: a working KVM reaches the
// "no root fs" panic and QEMU exits (-no-reboot, panic=-1) within a second or two.
func probeKVMBoot(qemuBin, kernel string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, qemuBin, "-accel", "kvm", "-nodefaults", "-no-user-config",
		"-nographic", "-no-reboot", "-m", "256", "-display", "none", "-serial", "stdio",
		"-kernel", kernel, "-append", "console=ttyS0 panic=-1 quiet")
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if ctx.Err() != nil {
		return fmt.Errorf("KVM hangs: a test kernel (%s) did not boot under KVM within %s, though /dev/kvm opens", kernel, timeout)
	}
	if err != nil && !strings.Contains(out.String(), "Kernel panic") {
		return fmt.Errorf("KVM test boot failed: %v: %s", err, lastLine(out.String()))
	}
	return nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
