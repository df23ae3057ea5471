package qemu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A probe without a kernel must not be remembered: it cannot see a KVM that hangs real guests.
func TestProbeWithoutKernelIsNotCached(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	probeNative("qemu-system-x86_64", "", ProbeOptions{})
	if _, err := os.Stat(verdictPath()); err == nil {
		t.Fatal("a kernel-less probe was cached as a verdict")
	}
}

// Verdicts for two binaries live side by side; switching between them must not probe again.
func TestVerdictPerBinary(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	saveVerdict("a", Verdict{Accel: "tcg", Reason: "ra"})
	saveVerdict("b", Verdict{Accel: "kvm", Reason: "rb"})
	saveVerdict("a", Verdict{Accel: "tcg", Reason: "ra2"})
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
		saveVerdict(string(rune('k'+i)), Verdict{Accel: "tcg"})
	}
	if n := len(readVerdicts()); n != maxVerdicts {
		t.Errorf("%d verdicts kept, want at most %d", n, maxVerdicts)
	}
	if st, err := os.Stat(verdictPath()); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("verdict file: %v, %v", st, err)
	}
}

// The key changes with the QEMU binary, so a new QEMU is probed again.
func TestProbeKeyFollowsQEMU(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "qemu")
	os.WriteFile(bin, []byte("one"), 0o755)
	k1 := probeKey(bin)
	if k1 != probeKey(bin) {
		t.Fatal("the key is not stable")
	}
	os.WriteFile(bin, []byte("a newer build"), 0o755)
	if probeKey(bin) == k1 {
		t.Fatal("a changed QEMU binary kept the old key")
	}
}

// A first start never waits out a slow probe: past the wait it boots under TCG, and the
// probe's verdict, once in, is what the next start uses. The fake QEMU's "guest" prints
// its banner after a second, as a working but slow KVM would.
func TestFirstProbeDoesNotDelayBoot(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	dir := t.TempDir()
	bin := filepath.Join(dir, "qemu-system-x86_64")
	os.WriteFile(bin, []byte("#!/bin/sh\nsleep 1\necho 'Linux version 6.1 (fake)'\nsleep 30\n"), 0o755)
	kernel := filepath.Join(dir, "vmlinuz")
	os.WriteFile(kernel, []byte("not a kernel"), 0o644)

	kvmErr := ProbeKVM(2 * time.Second)
	began := time.Now()
	v := probeNative(bin, kernel, ProbeOptions{Wait: 200 * time.Millisecond})
	took := time.Since(began)
	if kvmErr != nil {
		// No usable /dev/kvm: the vCPU probe decides at once, and that is kept.
		if v.Pending || v.Accel != "tcg" {
			t.Fatalf("without KVM: %+v", v)
		}
	} else {
		if !v.Pending || v.Accel != "tcg" || !strings.Contains(v.Reason, "booting under TCG") {
			t.Fatalf("a slow first probe gave %+v after %s, want a pending TCG fallback", v, took)
		}
		if took > 3*time.Second {
			t.Fatalf("the boot waited %s for the probe", took)
		}
	}
	want := "tcg"
	if kvmErr == nil {
		want = "kvm"
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if kept, ok := loadVerdict(probeKey(bin)); ok {
			if kept.Accel != want {
				t.Fatalf("kept verdict %+v, want %s", kept, want)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the probe's verdict was never kept")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if v := probeNative(bin, kernel, ProbeOptions{Wait: time.Millisecond}); !v.Kept || v.Accel != want {
		t.Fatalf("the next start did not use the kept verdict: %+v", v)
	}
}
