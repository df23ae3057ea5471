package vmm

import "bytes"

// BootPanic reports whether the console a VM left behind shows a kernel panic. Under
// software emulation the guest kernel now and then dies early in boot while it patches its
// own code (QEMU's multi-threaded TCG runs a stale translation of the patched instruction),
// which is the emulator's fault rather than the guest's; callers boot again when it
// happens, a bounded number of times since the hazard is independent for each boot.
func BootPanic(console []byte) bool {
	return bytes.Contains(console, []byte("Kernel panic"))
}
