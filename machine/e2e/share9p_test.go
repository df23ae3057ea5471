//go:build linux

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/machine/machinetest"
)

// TestShareOverTransport mounts host folders through the Go 9p server over the
// authenticated host<->guest transport (trans=fd), the way Hyper-V guests will.
func TestShareOverTransport(t *testing.T) {
	e := machinetest.New(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "hello"), []byte("over the go 9p server\n"), 0o644)
	e.Must("machine", "init", "--share-type", "9p-transport", "--no-home-share", "--cpus", "2", "--memory", "1G", "--disk-size", "4G",
		"--mount", dir+":/mnt/s9", "--mount", dir+":/mnt/s9ro:ro")
	e.Must("machine", "start")
	out := e.Must("machine", "ssh", "--", "grep ' 9p ' /proc/mounts; cat /mnt/s9/hello; echo from-guest > /mnt/s9/back")
	if !strings.Contains(out, "trans=fd") || !strings.Contains(out, "over the go 9p server") {
		t.Fatalf("share not mounted over the transport:\n%s", out)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "back")); strings.TrimSpace(string(b)) != "from-guest" {
		t.Fatalf("the host did not see the guest's write: %q", b)
	}
	if out, err := e.Run("machine", "ssh", "--", "touch /mnt/s9ro/x"); err == nil {
		t.Fatalf("wrote through a read-only share: %s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
		t.Fatal("a file appeared through the read-only share")
	}
}
