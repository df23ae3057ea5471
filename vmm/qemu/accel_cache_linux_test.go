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

// Verdicts for two binaries live side by side; switching between them must not probe again.
func TestVerdictPerBinary(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	saveVerdict("a", verdict{Accel: "tcg", Reason: "ra"})
	saveVerdict("b", verdict{Accel: "kvm", Reason: "rb"})
	saveVerdict("a", verdict{Accel: "tcg", Reason: "ra2"})
	for key, want := range map[string]string{"a": "ra2", "b": "rb"} {
		v, ok := loadVerdict(key)
		if !ok || v.Reason != want {
			t.Errorf("verdict %s = %+v, %v; want reason %q", key, v, ok, want)
		}
	}
	if _, ok := loadVerdict("c"); ok {
		t.Error("a verdict for a binary never probed")
	}
	for i := range maxVerdicts + 2 {
		saveVerdict(string(rune('k'+i)), verdict{Accel: "tcg"})
	}
	if n := len(readVerdicts()); n != maxVerdicts {
		t.Errorf("%d verdicts kept, want at most %d", n, maxVerdicts)
	}
	os.WriteFile(verdictPath(), []byte(`{"key":"a","accel":"kvm"}`), 0o600) // the old format
	if _, ok := loadVerdict("a"); ok {
		t.Error("the old single-verdict file was read as a verdict")
	}
}
