//go:build !linux

package qemu

import "runtime"

const bootProbeWait = 0

func probeNative(string, string, ProbeOptions) Verdict {
	switch runtime.GOOS {
	case "darwin":
		return Verdict{Accel: "hvf", Reason: "Hypervisor.framework"}
	case "windows":
		return Verdict{Accel: "whpx", Reason: "Windows Hypervisor Platform"}
	}
	return Verdict{Accel: "tcg", Reason: "no native accelerator for " + runtime.GOOS}
}
