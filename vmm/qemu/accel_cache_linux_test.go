package qemu

import (
	"os"
	"testing"
)

// A probe without a kernel must not be remembered: it cannot see a KVM that hangs real guests.
func TestProbeWithoutKernelIsNotCached(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	probeNative("qemu-system-x86_64", "")
	if _, err := os.Stat(verdictPath()); err == nil {
		t.Fatal("a kernel-less probe was cached as a verdict")
	}
}
