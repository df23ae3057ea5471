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
	"time"

	"github.com/skiff-dev/skiff/images/guestinit"
)

func TestMain(m *testing.M) {
	// Stands in for the program a helper passes a request on to (modprobe, crun): prints
	// the variable's value and its arguments.
	if tag := os.Getenv("SKIFF_TEST_FAKE_EXEC"); tag != "" {
		fmt.Print(tag + strings.Join(os.Args, " "))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestModprobeFilter builds helpers/modprobe-filter.c against this test binary as
// modprobe: requests for binfmt-* modules are refused without it, requests for modules that
// are all loaded succeed without it, and anything else reaches it with its arguments intact
// and argv[0] "modprobe", which kmod dispatches on.
func TestModprobeFilter(t *testing.T) {
	sys := t.TempDir()
	// A module in /sys/module: built in (no initstate), loaded, or still loading.
	for m, state := range map[string]string{"nf_conntrack": "", "br_netfilter": "live\n", "veth": "coming\n"} {
		os.Mkdir(filepath.Join(sys, m), 0o755)
		if state != "" {
			os.WriteFile(filepath.Join(sys, m, "initstate"), []byte(state), 0o644)
		}
	}
	bin := buildHelper(t, "modprobe-filter.c", "MODPROBE="+testExecutable(t), "SYS_MODULE="+sys)
	run := func(args ...string) (string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "SKIFF_TEST_FAKE_EXEC=:")
		out, err := cmd.Output()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	for _, c := range []struct {
		args []string
		out  string
		code int
	}{
		// How the kernel asks: modprobe -q -- NAME.
		{[]string{"-q", "--", "binfmt-464c"}, "", 1},
		{[]string{"-q", "--", "rtnl-link-dummy"}, ":modprobe -q -- rtnl-link-dummy", 0},
		// How dockerd asks, for what is loaded (with either spelling) and what is not.
		{[]string{"-va", "nf_conntrack", "br-netfilter"}, "", 0},
		{[]string{"-va", "nf_conntrack", "ip6_tables"}, ":modprobe -va nf_conntrack ip6_tables", 0},
		{[]string{"-va", "veth"}, ":modprobe -va veth", 0}, // modprobe waits for its init
		// Flags that change what loading means always reach modprobe.
		{[]string{"-r", "nf_conntrack"}, ":modprobe -r nf_conntrack", 0},
		{[]string{"-va"}, ":modprobe -va", 0},
	} {
		if out, code := run(c.args...); out != c.out || code != c.code {
			t.Errorf("%v: exit %d, modprobe saw %q; want exit %d and %q", c.args, code, out, c.code, c.out)
		}
	}
}

// TestRuntimeProbes builds helpers/runtime-probes.c against a copy of this test binary as
// the runtime: dockerd's two probes are answered from the records
// guestinit.RecordRuntimeProbes keeps, while they match that runtime; anything else, and a
// record made for another runtime, reaches the runtime.
func TestRuntimeProbes(t *testing.T) {
	dir := t.TempDir()
	rt, records := filepath.Join(dir, "crun"), filepath.Join(dir, "records")
	b, err := os.ReadFile(testExecutable(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rt, b, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := buildHelper(t, "runtime-probes.c", "RUNTIME="+rt, "RECORDS="+records)
	run := func(args ...string) string {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "SKIFF_TEST_FAKE_EXEC=live:")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("helper %v: %v", args, err)
		}
		return string(out)
	}
	runs := 0
	record := func() {
		t.Helper()
		err := guestinit.RecordRuntimeProbes(rt, records, func(cmd *exec.Cmd) error {
			runs++
			cmd.Env = append(os.Environ(), "SKIFF_TEST_FAKE_EXEC=recorded:")
			return cmd.Run()
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	check := func(args []string, want string) {
		t.Helper()
		if out := run(args...); out != want {
			t.Errorf("helper %v printed %q, want %q", args, out, want)
		}
	}

	check([]string{"features"}, "live:"+bin+" features") // nothing recorded yet
	record()
	check([]string{"features"}, "recorded:"+rt+" features")
	check([]string{"--version"}, "recorded:"+rt+" --version")
	check([]string{"features", "--debug"}, "live:"+bin+" features --debug")
	check([]string{"create", "--bundle", "b", "c1"}, "live:"+bin+" create --bundle b c1")
	if record(); runs != 2 {
		t.Errorf("recording again ran the runtime %d times in all, want 2 (the records still match)", runs)
	}

	// Another runtime: the records no longer answer until they are made again.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(rt, later, later); err != nil {
		t.Fatal(err)
	}
	check([]string{"--version"}, "live:"+bin+" --version")
	record()
	check([]string{"--version"}, "recorded:"+rt+" --version")
}

func testExecutable(t *testing.T) string {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return self
}

// buildHelper compiles helpers/SRC with the string macros NAME=VALUE and returns the binary.
func buildHelper(t *testing.T, src string, defines ...string) string {
	t.Helper()
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("no gcc to build the helper with (make image installs it)")
	}
	bin := filepath.Join(t.TempDir(), strings.TrimSuffix(src, ".c"))
	args := []string{"-O2", "-Wall", "-Wextra", "-Werror", "-o", bin}
	for _, d := range defines {
		name, value, _ := strings.Cut(d, "=")
		args = append(args, fmt.Sprintf("-D%s=%q", name, value))
	}
	if out, err := exec.Command(cc, append(args, filepath.Join("helpers", src))...).CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v: %s", src, err, out)
	}
	return bin
}
