package vmm

import (
	"bytes"
	"strings"
)

// BootPanic reports whether the console a VM left behind shows a kernel panic. Under
// software emulation the guest kernel now and then dies early in boot while it patches its
// own code (QEMU's multi-threaded TCG runs a stale translation of the patched instruction),
// which is the emulator's fault rather than the guest's; callers boot again when it
// happens, a bounded number of times since the hazard is independent for each boot.
func BootPanic(console []byte) bool {
	return bytes.Contains(console, []byte("Kernel panic"))
}

// WithConsole points the kernel's console at dev (hvc0, ttyS0, ...) in place of any the
// command line names: the console device is the backend's, not the image's (vz has only a
// virtio console, QEMU's arm64 machine a PL011 UART).
func WithConsole(cmdline, dev string) string {
	var out []string
	for _, f := range strings.Fields(cmdline) {
		if !strings.HasPrefix(f, "console=") {
			out = append(out, f)
		}
	}
	return strings.Join(append([]string{"console=" + dev}, out...), " ")
}
