//go:build !linux

package qemu

import "runtime"

func probeNative(bin, kernel string) (string, string) {
	switch runtime.GOOS {
	case "darwin":
		return "hvf", "Hypervisor.framework"
	case "windows":
		return "whpx", "Windows Hypervisor Platform"
	}
	return "tcg", "no native accelerator for " + runtime.GOOS
}
