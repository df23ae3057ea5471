package doctor

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/machine"
)

// TestRealHost runs the checks against this host through DefaultEnv, with a machine
// whose host agent died and left its control socket behind.
func TestRealHost(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("unix sockets in a temp dir")
	}
	home := machine.Home{Root: t.TempDir()}
	d := home.Dir("default")
	if err := os.MkdirAll(d.Path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.File(machine.FileConfig), []byte(`{"schemaVersion":1,"name":"default"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.EnsureRun(); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", d.Sock(machine.SockControl))
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()

	// With a guest kernel in the cache the KVM check boots it for real.
	if k := os.Getenv("SKIFF_TEST_KERNEL"); k != "" {
		dir := filepath.Join(home.CacheDir(), "images", "test")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(k, filepath.Join(dir, "vmlinuz")); err != nil {
			t.Fatal(err)
		}
	}
	env := DefaultEnv(home)
	fs := Run(context.Background(), env)
	var stale bool
	for _, f := range fs {
		t.Logf("%-18s ok=%-5v warn=%-5v %s", f.Check, f.OK, f.Warn, f.Detail)
		if f.Check == "sockets" && !f.OK && strings.Contains(f.Detail, filepath.Base(d.Sock(machine.SockControl))) {
			stale = true
		}
		// CI sets this on hosts whose /dev/kvm opens but never runs a guest.
		if f.Check == "virtualization" && os.Getenv("SKIFF_EXPECT_KVM_HANG") == "1" && !strings.Contains(f.Detail, "KVM hangs") {
			t.Errorf("virtualization: %s (want KVM hangs)", f.Detail)
		}
	}
	if !stale {
		t.Error("the stale control socket was not reported")
	}
}
