package hostcmd

import (
	"github.com/skiff-dev/skiff/installer"

	"github.com/skiff-dev/skiff/installer/hostenv/hostenvtest"

	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/installer/doctor"
	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/machine/agentapi"
)

func testHome(t *testing.T, machines ...string) machine.Home {
	t.Helper()
	h := machine.Home{Root: t.TempDir()}
	for _, m := range machines {
		d := h.Dir(m)
		os.MkdirAll(d.Path, 0o700)
		os.WriteFile(d.File(machine.FileConfig), []byte(`{"schemaVersion":1}`), 0o600)
	}
	return h
}

func stubDoctorEnv(free uint64) func(machine.Home) doctor.Env {
	return func(machine.Home) doctor.Env {
		return doctor.Env{
			GOOS: "linux", GOARCH: "amd64",
			Getenv:        func(string) string { return "" },
			LookPath:      func(b string) (string, error) { return "/usr/bin/" + b, nil },
			Lstat:         func(string) (fs.FileInfo, error) { return nil, fs.ErrNotExist },
			Readlink:      os.Readlink,
			ProbeKVM:      func(time.Duration) (string, error) { return "probed now", nil },
			Ping:          func(context.Context, string) error { return nil },
			Dial:          func(context.Context, string) error { return nil },
			FreeBytes:     func(string) (uint64, error) { return free, nil },
			DockerContext: func() (string, string, error) { return "", "", nil },
			Machines:      func() ([]doctor.Machine, error) { return nil, nil },
			AgentState:    func(context.Context, string) (*agentapi.State, error) { return nil, errors.New("down") },
			DataDir:       "/data",
		}
	}
}

func TestDoctorCommand(t *testing.T) {
	home := testHome(t)
	run := func(free uint64) (string, error) {
		cmd := NewDoctor(Options{Home: func() (machine.Home, error) { return home, nil }, DoctorEnv: stubDoctorEnv(free)})
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(nil)
		err := cmd.ExecuteContext(context.Background())
		return out.String(), err
	}
	out, err := run(100 << 30)
	if err != nil || !strings.Contains(out, "CHECK") || strings.Contains(out, "FAIL") {
		t.Fatalf("healthy: %v\n%s", err, out)
	}
	out, err = run(1 << 20)
	if !errors.Is(err, doctor.ErrFailed) || !regexp.MustCompile(`disk space\s+FAIL`).MatchString(out) || !strings.Contains(out, "fix: free space") {
		t.Fatalf("low disk: %v\n%s", err, out)
	}
}

func TestSocketLinkCommandAsksFirst(t *testing.T) {
	home := testHome(t, "default")
	sock := filepath.Join(t.TempDir(), "docker.sock")
	run := func(stdin string, args ...string) (string, error) {
		cmd := NewSocket(Options{Home: func() (machine.Home, error) { return home, nil }})
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetIn(strings.NewReader(stdin))
		cmd.SetArgs(append(args, "--path", sock))
		err := cmd.ExecuteContext(context.Background())
		return out.String(), err
	}
	if _, err := run("", "link"); err == nil || !strings.Contains(err.Error(), "confirm") {
		t.Fatalf("link without an answer: %v", err)
	}
	if _, err := os.Lstat(sock); err == nil {
		t.Fatal("linked without consent")
	}
	if out, err := run("y\n", "link"); err != nil || !strings.Contains(out, "[y/N]") {
		t.Fatalf("link with yes: %v\n%s", err, out)
	}
	if got, _ := os.Readlink(sock); got != home.Dir("default").Sock(machine.SockEngine) {
		t.Fatalf("link -> %q", got)
	}
	if out, err := run("", "status"); err != nil || !strings.Contains(out, "ours") {
		t.Fatalf("status: %v %s", err, out)
	}
	if _, err := run("", "unlink"); err != nil {
		t.Fatal(err)
	}
	if _, err := run("", "link", "--machine", "nope", "--yes"); err == nil {
		t.Fatal("linked a machine that does not exist")
	}
}

func TestAutostartCommand(t *testing.T) {
	home := testHome(t, "default")
	r := &hostenvtest.Runner{}
	o := Options{
		Home:       func() (machine.Home, error) { return home, nil },
		Executable: func() (string, error) { return "/usr/bin/skiff", nil },
		Runner:     r,
		Autostart:  installer.AutostartOptions{HomeDir: t.TempDir(), ConfigDir: t.TempDir(), UID: 501, TempDir: t.TempDir()},
	}
	for _, args := range [][]string{{"enable"}, {"status"}, {"disable"}, {"status"}} {
		cmd := NewAutostart(o)
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetArgs(args)
		if err := cmd.ExecuteContext(context.Background()); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		t.Logf("%v: %s", args, strings.TrimSpace(out.String()))
	}
	if len(r.Calls) == 0 {
		t.Fatal("no platform tool was run")
	}
	if err := o.ApplyAutostart(context.Background(), "ghost", true); !errors.Is(err, machine.ErrNotFound) {
		t.Fatal("autostart enabled for a machine that does not exist")
	}
}
