// Package machinetest runs the real skiff CLI against real VMs for end-to-end tests. It
// is enabled by SKIFF_E2E=1 and needs a built guest image (SKIFF_IMAGE, or images/out/ARCH
// from `make image`); with SKIFF_E2E=1 a missing prerequisite fails rather than skips.
package machinetest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Env is one isolated Skiff home with the CLI built for it.
type Env struct {
	T      testing.TB
	Home   string
	Bin    string
	Image  string
	Docker string
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// RepoRoot finds the module root from the test's working directory.
func RepoRoot(t testing.TB) string {
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("cannot find go.mod above the test directory")
		}
		dir = parent
	}
}

// Enabled skips the test unless end-to-end tests were asked for.
func Enabled(t testing.TB) {
	if os.Getenv("SKIFF_E2E") != "1" {
		t.Skip("end-to-end test: set SKIFF_E2E=1 (needs QEMU and a guest image; see README)")
	}
}

// RemoveBin removes the skiff binary New built for the test process (~25 MB in the
// temporary folder per run otherwise): a package's TestMain calls it after m.Run.
func RemoveBin() {
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
}

// New makes an isolated Skiff home. Its path is short so socket paths stay short.
func New(t testing.TB) *Env {
	Enabled(t)
	root := RepoRoot(t)
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "skiffbin")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "skiff")
		cmd := exec.Command("go", "build", "-o", builtBin, "./cmd/skiff")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build skiff: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	img := os.Getenv("SKIFF_IMAGE")
	if img == "" {
		img = filepath.Join(root, "images", "out", runtime.GOARCH)
	}
	if _, err := os.Stat(filepath.Join(img, "manifest.json")); err != nil {
		t.Fatalf("no guest image at %s (run `make image`): %v", img, err)
	}
	home, err := os.MkdirTemp("", "sk")
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{T: t, Home: home, Bin: builtBin, Image: img, Docker: "docker"}
	t.Cleanup(func() {
		// Stop whatever the test left running, then remove the home.
		if os.Getenv("SKIFF_E2E_KEEP") != "" {
			return
		}
		out, _ := e.Run("machine", "list", "--format", "{{.Name}}")
		names := strings.Fields(out)
		// Before rm, which deletes the machine's directory and with it the logs.
		if t.Failed() {
			e.DumpLogs()
		}
		for _, n := range names {
			e.Run("machine", "rm", "-f", n)
		}
		if os.Getenv("SKIFF_E2E_KEEP") != "" {
			t.Logf("kept the Skiff home %s (SKIFF_E2E_KEEP)", home)
			return
		}
		os.RemoveAll(home)
	})
	return e
}

// Cmd builds a skiff command in this home.
func (e *Env) Cmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, e.Bin, args...)
	// The clients' own settings stay in the test's home too: docker contexts, and the
	// podman connections start registers (as root podman would write /etc/containers).
	cmd.Env = append(os.Environ(), "SKIFF_HOME="+e.Home, "SKIFF_IMAGE="+e.Image, "DOCKER_CONFIG="+filepath.Join(e.Home, "docker-config"),
		"CONTAINERS_CONF="+filepath.Join(e.Home, "containers.conf"))
	return cmd
}

// Run runs skiff and returns its combined output.
func (e *Env) Run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := e.Cmd(ctx, args...).CombinedOutput()
	// A slow command in a passing test is how a stall shows first (a guest shell's
	// profile waiting on a lock in a shared home once cost each ssh a minute).
	if d := time.Since(start); d > 30*time.Second {
		e.T.Logf("slow: skiff %s took %s", strings.Join(args, " "), d.Round(time.Millisecond))
	}
	return string(out), err
}

// Must runs skiff and fails the test on error.
func (e *Env) Must(args ...string) string {
	e.T.Helper()
	out, err := e.Run(args...)
	if err != nil {
		e.T.Fatalf("skiff %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// EngineSocket is the engine socket of a machine in this home.
func (e *Env) EngineSocket(name string) string {
	out := e.Must("machine", "inspect", name, "--format", "{{.Engine}}")
	return strings.TrimSpace(out)
}

// DockerCmd builds a docker CLI command against a machine's socket.
func (e *Env) DockerCmd(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, e.Docker, args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+e.EngineSocket(name), "DOCKER_CONFIG="+filepath.Join(e.Home, "docker-config"))
	return cmd
}

// Docker runs the docker CLI against a machine and returns stdout.
func (e *Env) DockerRun(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := e.DockerCmd(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// MustDocker runs docker and fails the test on error.
func (e *Env) MustDocker(name string, args ...string) string {
	e.T.Helper()
	out, err := e.DockerRun(name, args...)
	if err != nil {
		e.T.Fatalf("%v [%s]", err, e.Glance(name))
	}
	return out
}

// Glance is one line on how a machine is now: its state and reason, the end of its
// agent log, and a kernel oops or panic on its console. A failure's own line carries it,
// where CI's summary of a failed run keeps no multi-line log.
func (e *Env) Glance(name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, _ := e.Cmd(ctx, "machine", "inspect", name, "--format", "{{.Status.State}}: {{.Status.Reason}}").CombinedOutput()
	parts := []string{"machine " + name + " " + strings.TrimSpace(string(st))}
	dir := filepath.Join(e.Home, "machines", name)
	if log, err := os.ReadFile(filepath.Join(dir, "agent.log")); err == nil {
		lines := strings.Split(strings.TrimSpace(string(log)), "\n")
		parts = append(parts, "agent.log ends: "+strings.Join(lines[max(0, len(lines)-4):], " | "))
	}
	if con, err := os.ReadFile(filepath.Join(dir, "serial.log")); err == nil {
		var seen []string
		for _, l := range strings.Split(string(con), "\n") {
			if strings.Contains(l, "Oops") || strings.Contains(l, "Kernel panic") || strings.Contains(l, "Out of memory") || strings.Contains(l, "exited unexpectedly") {
				seen = append(seen, "console: "+strings.TrimSpace(l))
			}
		}
		parts = append(parts, seen[max(0, len(seen)-3):]...)
	}
	return strings.Join(parts, "; ")
}

// TestImage is the locally built image tests run (no registry is reachable).
const TestImage = "skiff-test/busybox:latest"

// LoadBusybox imports a static busybox as TestImage into the machine's engine.
func (e *Env) LoadBusybox(name string) {
	e.T.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		e.T.Fatal("busybox not found: install busybox-static")
	}
	dir := e.T.(interface{ TempDir() string }).TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		e.T.Fatal(err)
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		e.T.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), data, 0o755); err != nil {
		e.T.Fatal(err)
	}
	for _, c := range []string{"sh", "ls", "cat", "echo", "sleep", "wc", "head", "tail", "nc", "httpd", "date", "sync", "mkdir",
		"touch", "rm", "true", "seq", "yes", "dd", "md5sum", "sha256sum", "env", "grep", "sed", "od", "ps", "kill", "tr", "cp", "stat", "df", "id"} {
		os.Symlink("busybox", filepath.Join(dir, "bin", c))
	}
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "bin", "echod"), "./machine/machinetest/echod")
	build.Dir = RepoRoot(e.T)
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		e.T.Fatalf("build echod: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tar := exec.CommandContext(ctx, "tar", "-C", dir, "-c", ".")
	imp := e.DockerCmd(ctx, name, "import", "--change", "ENV PATH=/bin", "-", TestImage)
	pipe, _ := tar.StdoutPipe()
	imp.Stdin = pipe
	var out bytes.Buffer
	imp.Stdout, imp.Stderr = &out, &out
	if err := imp.Start(); err != nil {
		e.T.Fatal(err)
	}
	if err := tar.Run(); err != nil {
		e.T.Fatal(err)
	}
	if err := imp.Wait(); err != nil {
		e.T.Fatalf("docker import: %v: %s", err, out.String())
	}
}

// DumpLogs prints the agent log, serial console and QEMU log tails of every machine.
func (e *Env) DumpLogs() { e.T.Logf("%s", e.LogText()) }

// LogText is what DumpLogs prints.
func (e *Env) LogText() string {
	var b strings.Builder
	ms, _ := filepath.Glob(filepath.Join(e.Home, "machines", "*"))
	for _, m := range ms {
		for _, f := range []string{"agent.log", "serial.log", "qemu.log"} {
			data, _ := os.ReadFile(filepath.Join(m, f))
			s := string(data)
			if len(s) > 6000 {
				s = s[len(s)-6000:]
			}
			fmt.Fprintf(&b, "=== %s/%s ===\n%s\n", filepath.Base(m), f, s)
		}
		// The engine's side, from a guest that is still up; a stopped one has nothing here.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := e.Cmd(ctx, "machine", "ssh", filepath.Base(m), "--",
			"tail -c 6000 /var/log/engine.log; echo; echo '--- containerd.log'; tail -c 3000 /var/log/containerd.log; echo '--- dmesg'; dmesg | tail -n 30").CombinedOutput()
		cancel()
		if err == nil {
			fmt.Fprintf(&b, "=== %s guest logs ===\n%s\n", filepath.Base(m), out)
		}
	}
	return b.String()
}

// Eventually polls cond until it holds or the timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// FreePort finds a host port free for both TCP and UDP on 127.0.0.1 right now.
func FreePort(t testing.TB) int {
	t.Helper()
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p))); err == nil {
			u.Close()
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}
