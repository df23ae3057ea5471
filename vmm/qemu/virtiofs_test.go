//go:build linux

package qemu

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/vmm"
)

// A virtiofsd that fails names its share and says why; one socket per share, private.
func TestVirtiofsdFailure(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "virtiofsd")
	os.WriteFile(fake, []byte("#!/bin/sh\n[ \"$1\" = --help ] && { echo '--shared-dir --readonly'; exit 0; }\necho \"bad share: $*\" >&2\nexit 1\n"), 0o755)
	share := t.TempDir()
	cfg := vmm.Config{Dir: dir, RunDir: dir, Shares: []vmm.Share{{Tag: "skiff0", HostPath: share, Type: "virtiofs"}}}
	b := &Backend{Virtiofsd: fake}
	ds, err := b.startVirtiofs(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ds.stop()
	if st, err := os.Stat(virtiofsSock(cfg, 0)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v %v", st, err)
	}
	select {
	case <-ds[0].proc.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the fake virtiofsd did not exit")
	}
	err = ds.exited()
	if err == nil || !strings.Contains(err.Error(), "skiff0") || !strings.Contains(err.Error(), "bad share: --fd=3 --shared-dir "+share) {
		t.Fatalf("failure of virtiofsd: %v", err)
	}

	cfg.RunDir = "/" + strings.Repeat("x", 110)
	if _, err := b.startVirtiofs(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "too long") {
		t.Fatalf("a long socket path: %v", err)
	}
	cfg.Shares[0].HostPath = filepath.Join(share, "missing")
	if _, err := b.startVirtiofs(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "share skiff0") {
		t.Fatalf("a missing folder: %v", err)
	}
	if _, err := (&Backend{Virtiofsd: filepath.Join(dir, "none")}).startVirtiofs(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "virtiofsd not found") {
		t.Fatalf("no virtiofsd: %v", err)
	}
}

// The C virtiofsd lets the guest cache no attribute or entry (timeout=0), so a host edit
// is what the guest's next stat and open see (machine/e2e checkCoherent proves it in a
// guest); readdirplus, whose attributes would expire at once, is off.
func TestVirtiofsdCoherent(t *testing.T) {
	t.Setenv(VirtiofsdArgsEnv, "")
	for _, sh := range []vmm.Share{{HostPath: "/rw"}, {HostPath: "/ro", ReadOnly: true}} {
		for _, asUser := range []bool{false, true} {
			got := " " + strings.Join(virtiofsd{path: "/usr/lib/qemu/virtiofsd"}.args(sh, asUser), " ") + " "
			for _, want := range []string{" -o cache=auto ", " -o timeout=0 ", " -o no_readdirplus "} {
				if !strings.Contains(got, want) {
					t.Errorf("virtiofsd for %+v (as user %v) lacks %q:%s", sh, asUser, want, got)
				}
			}
		}
	}
}
