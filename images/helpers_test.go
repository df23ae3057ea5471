//go:build linux

package images

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	// Stands in for modprobe when TestModprobeFilter's helper passes a request on.
	if os.Getenv("SKIFF_TEST_FAKE_MODPROBE") != "" {
		fmt.Print(strings.Join(os.Args, " "))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestModprobeFilter builds helpers/modprobe-filter.c against this test binary as
// modprobe: requests for binfmt-* modules are refused without it, and anything else
// reaches it with its arguments intact and argv[0] "modprobe", which kmod dispatches on.
func TestModprobeFilter(t *testing.T) {
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("no gcc to build the helper with (make image installs it)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "modprobe-filter")
	if out, err := exec.Command(cc, "-O2", "-Wall", "-Werror", fmt.Sprintf(`-DMODPROBE="%s"`, self),
		"-o", bin, "helpers/modprobe-filter.c").CombinedOutput(); err != nil {
		t.Fatalf("build the helper: %v: %s", err, out)
	}
	run := func(args ...string) (string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "SKIFF_TEST_FAKE_MODPROBE=1")
		out, err := cmd.Output()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	// How the kernel asks: modprobe -q -- NAME.
	if out, code := run("-q", "--", "binfmt-464c"); code != 1 || out != "" {
		t.Errorf("binfmt-464c: exit %d, output %q; want exit 1 without running modprobe", code, out)
	}
	if out, code := run("-q", "--", "rtnl-link-dummy"); code != 0 || out != "modprobe -q -- rtnl-link-dummy" {
		t.Errorf("rtnl-link-dummy: exit %d, modprobe saw %q; want it passed on as is", code, out)
	}
}
