//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/machine/machinetest"
)

const img = machinetest.TestImage

func TestDockerVersion(t *testing.T) {
	m := machine(t)
	out := m.MustDocker("default", "version", "--format", "{{.Client.Version}} {{.Server.Version}} {{.Server.Os}}")
	if !strings.HasSuffix(strings.TrimSpace(out), "linux") {
		t.Fatalf("docker version: %q", out)
	}
}

// TestRunStdin pipes a host file through `docker run -i`: stdin EOF must reach the
// container (half-close) while its output still flows back, and the command must exit.
func TestRunStdin(t *testing.T) {
	m := machine(t)
	data := make([]byte, 3<<20)
	rand.Read(data)
	f := filepath.Join(t.TempDir(), "in")
	os.WriteFile(f, data, 0o644)
	sum := md5.Sum(data)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := m.DockerCmd(ctx, "default", "run", "-i", "--rm", img, "sh", "-c", "md5sum; echo done")
	in, _ := os.Open(f)
	defer in.Close()
	cmd.Stdin = in
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docker run -i: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), hex.EncodeToString(sum[:])) || !strings.Contains(string(out), "done") {
		t.Fatalf("docker run -i did not return the full input's digest %x:\n%s", sum, out)
	}
}

// TestBuildLargeContext builds from a context over 50MB with a .dockerignore.
func TestBuildLargeContext(t *testing.T) {
	m := machine(t)
	dir := t.TempDir()
	big := make([]byte, 60<<20)
	rand.Read(big)
	os.WriteFile(filepath.Join(dir, "big.bin"), big, 0o644)
	os.MkdirAll(filepath.Join(dir, "ignored"), 0o755)
	os.WriteFile(filepath.Join(dir, "ignored", "junk"), big[:10<<20], 0o644)
	os.WriteFile(filepath.Join(dir, ".dockerignore"), []byte("ignored\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM "+img+"\nCOPY . /ctx\n"), 0o644)
	sum := md5.Sum(big)
	m.MustDocker("default", "build", "-t", "skiff-test/bigctx", dir)
	out := m.MustDocker("default", "run", "--rm", "skiff-test/bigctx", "sh", "-c", "md5sum /ctx/big.bin; ls /ctx")
	if !strings.Contains(out, hex.EncodeToString(sum[:])) {
		t.Fatalf("the 60MB file arrived changed:\n%s", out)
	}
	if strings.Contains(out, "ignored") {
		t.Fatalf(".dockerignore was not honoured:\n%s", out)
	}
}

// TestLogsFollow checks that each line shows up as it is written, not at the end.
func TestLogsFollow(t *testing.T) {
	m := machine(t)
	name := "logger"
	m.MustDocker("default", "run", "-d", "--name", name, img, "sh", "-c", "sleep 2; for i in 1 2 3 4 5 6; do echo line$i; sleep 1; done")
	defer m.DockerRun("default", "rm", "-f", name)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := m.DockerCmd(ctx, "default", "logs", "-f", name)
	pipe, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var arrivals []time.Time
	sc := bufio.NewScanner(pipe)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "line") {
			arrivals = append(arrivals, time.Now())
		}
	}
	cmd.Wait()
	if len(arrivals) != 6 {
		t.Fatalf("logs -f delivered %d lines, want 6", len(arrivals))
	}
	// Six lines written a second apart must arrive spread out, not in one burst.
	if spread := arrivals[5].Sub(arrivals[0]); spread < 3*time.Second {
		t.Fatalf("lines arrived within %s of each other: buffered, not streamed", spread)
	}
}

func TestEvents(t *testing.T) {
	m := machine(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := m.DockerCmd(ctx, "default", "events", "--filter", "type=container", "--filter", "container=evt", "--format", "{{.Action}}")
	pipe, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	seen := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			seen <- sc.Text()
		}
		close(seen)
	}()
	time.Sleep(time.Second) // let the stream attach before the container runs
	m.MustDocker("default", "run", "--rm", "--name", "evt", img, "true")
	want := map[string]bool{"create": false, "start": false, "die": false}
	timeout := time.After(60 * time.Second)
	for {
		select {
		case a, ok := <-seen:
			if !ok {
				t.Fatalf("events stream ended early; saw %v", want)
			}
			if _, ok := want[a]; ok {
				want[a] = true
			}
			if want["create"] && want["start"] && want["die"] {
				return
			}
		case <-timeout:
			t.Fatalf("events missing: %v", want)
		}
	}
}

func TestCp(t *testing.T) {
	m := machine(t)
	dir := t.TempDir()
	data := make([]byte, 1<<20)
	rand.Read(data)
	os.WriteFile(filepath.Join(dir, "in.bin"), data, 0o644)
	m.MustDocker("default", "create", "--name", "cpbox", img, "true")
	defer m.DockerRun("default", "rm", "-f", "cpbox")
	m.MustDocker("default", "cp", filepath.Join(dir, "in.bin"), "cpbox:/in.bin")
	m.MustDocker("default", "cp", "cpbox:/in.bin", filepath.Join(dir, "out.bin"))
	got, err := os.ReadFile(filepath.Join(dir, "out.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("docker cp round trip changed the file (err %v, %d bytes)", err, len(got))
	}
}

// tmux drives an interactive TTY the way a person at a terminal would.
type tmux struct {
	t       *testing.T
	session string
}

func newTmux(t *testing.T, env []string, command string) *tmux {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatal("tmux is needed for the TTY tests: apt-get install tmux")
	}
	x := &tmux{t: t, session: fmt.Sprintf("skiff-%d", time.Now().UnixNano())}
	cmd := exec.Command("tmux", "new-session", "-d", "-s", x.session, "-x", "120", "-y", "30", command)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tmux: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("tmux", "kill-session", "-t", x.session).Run() })
	return x
}

func (x *tmux) send(keys ...string) {
	exec.Command("tmux", append([]string{"send-keys", "-t", x.session}, keys...)...).Run()
}

func (x *tmux) screen() string {
	out, _ := exec.Command("tmux", "capture-pane", "-p", "-t", x.session).Output()
	return string(out)
}

func (x *tmux) waitFor(text string, timeout time.Duration) {
	x.t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(x.screen(), text) {
		if time.Now().After(deadline) {
			x.t.Fatalf("%q never appeared on the terminal:\n%s", text, x.screen())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestExecAndAttachTTY(t *testing.T) {
	m := machine(t)
	m.MustDocker("default", "run", "-d", "-it", "--name", "ttybox", img, "sh")
	defer m.DockerRun("default", "rm", "-f", "ttybox")
	host := "DOCKER_HOST=unix://" + m.EngineSocket("default")
	cfg := "DOCKER_CONFIG=" + filepath.Join(m.Home, "docker-config")

	ex := newTmux(t, []string{host, cfg}, "docker exec -it ttybox sh")
	time.Sleep(2 * time.Second)
	ex.send("echo exec-$((6*7)); [ -t 0 ] && echo is-a-tty", "Enter")
	ex.waitFor("exec-42", 60*time.Second)
	ex.waitFor("is-a-tty", 10*time.Second)
	ex.send("exit", "Enter")

	at := newTmux(t, []string{host, cfg}, "docker attach ttybox")
	time.Sleep(2 * time.Second)
	at.send("echo attached-$((40+2))", "Enter")
	at.waitFor("attached-42", 60*time.Second)
}

func TestCompose(t *testing.T) {
	m := machine(t)
	compose, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Fatal("docker-compose is needed: apt-get install docker-compose")
	}
	dir := t.TempDir()
	port := machinetest.FreePort(t)
	yml := fmt.Sprintf(`version: "3"
services:
  web:
    image: %s
    command: ["sh", "-c", "mkdir -p /www && echo compose-ok > /www/index.html && httpd -f -p 80 -h /www"]
    ports:
      - "%d:80"
`, img, port)
	os.WriteFile(filepath.Join(dir, "docker-compose.yml"), []byte(yml), 0o644)
	run := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, compose, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+m.EngineSocket("default"), "COMPOSE_PROJECT_NAME=skiffe2e")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("docker-compose %v: %v\n%s", args, err, out)
		}
	}
	run("up", "-d")
	defer run("down")
	body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", port), 30*time.Second)
	if strings.TrimSpace(body) != "compose-ok" {
		t.Fatalf("compose service answered %q", body)
	}
}

func httpGet(t *testing.T, url string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		out, err := exec.Command("curl", "-sf", "--max-time", "10", url).Output()
		if err == nil {
			return string(out)
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("GET %s: %v", url, last)
	return ""
}
