//go:build linux

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/machine/machinetest"
)

// podmanEnv is a podman machine and the host's podman CLI pointed at its socket.
type podmanEnv struct {
	e      *machinetest.Env
	url    string
	shared string // a host folder the machine shares at /mnt/elsewhere
}

// podman runs the host's podman CLI (Debian bookworm: 4.3) as a remote client of the
// machine's Podman, with stdin from in, and returns its combined output.
func (p *podmanEnv) podman(in io.Reader, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "podman", append([]string{"--remote", "--url", p.url}, args...)...)
	cmd.Stdin = in
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (p *podmanEnv) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := p.podman(nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPodmanClient drives a podman machine with the real podman CLI through Skiff's
// engine socket: the libpod API, its hijacked exec and attach streams (sent without an
// Upgrade header), path translation in libpod bodies, and the host integration.
func TestPodmanClient(t *testing.T) {
	if _, err := exec.LookPath("podman"); err != nil {
		t.Skip("the podman CLI is not installed (installer/dev/deps.sh installs it)")
	}
	e := machinetest.New(t)
	// Podman keeps its connections in this file (as root it would be the system's
	// /etc/containers/containers.conf); skiff and the CLI both inherit it.
	conf := filepath.Join(e.Home, "containers.conf")
	if err := os.WriteFile(conf, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CONTAINERS_CONF", conf)
	// Outside the Skiff home, whose data is never shared.
	shared, err := os.MkdirTemp("", "skshare")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	if err := os.MkdirAll(filepath.Join(shared, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(shared, "sub", "f"), []byte("from the host\n"), 0o644)
	e.Must("machine", "init", "--engine", "podman", "--cpus", "2", "--memory", "2G", "--disk-size", "8G",
		"--no-home-share", "--mount", shared+":/mnt/elsewhere")
	e.Must("machine", "start")
	sock := e.EngineSocket("default")
	p := &podmanEnv{e: e, url: "unix://" + sock, shared: shared}

	// Host integration: machine env and the system connection.
	env := e.Must("machine", "env", "--shell", "bash")
	for _, want := range []string{`CONTAINER_HOST="unix://` + sock + `"`, `DOCKER_HOST="unix://` + sock + `"`} {
		if !strings.Contains(env, want) {
			t.Errorf("machine env lacks %s:\n%s", want, env)
		}
	}
	conns, err := exec.Command("podman", "system", "connection", "list", "--format", "{{.Name}} {{.URI}} {{.Default}}").CombinedOutput()
	if err != nil || !strings.Contains(string(conns), "skiff unix://"+sock+" true") {
		t.Errorf("podman's connections after start: %v\n%s", err, conns)
	}

	// Version skew: the client speaks its own libpod API version (4.3.x) to the
	// guest's newer Podman, which serves older clients.
	t.Logf("podman versions: %s", p.must(t, "version", "--format", "client {{.Client.Version}} (API {{.Client.APIVersion}}), server {{.Server.Version}} (API {{.Server.APIVersion}})"))
	e.LoadBusybox("default")
	img := machinetest.TestImage

	t.Run("run", func(t *testing.T) {
		if out := p.must(t, "run", "--rm", img, "echo", "hello from podman"); strings.TrimSpace(out) != "hello from podman" {
			t.Fatalf("run printed %q", out)
		}
	})

	t.Run("ps and exec -i", func(t *testing.T) {
		p.must(t, "run", "-d", "--name", "sleeper", img, "sleep", "600")
		if out := p.must(t, "ps", "--format", "{{.Names}} {{.Status}}"); !strings.Contains(out, "sleeper Up") {
			t.Fatalf("ps:\n%s", out)
		}
		// stdin reaches the process, and its end too: "eof" comes only after cat sees EOF.
		in := strings.Repeat("line of stdin\n", 2000)
		out, err := p.podman(strings.NewReader(in), "exec", "-i", "sleeper", "sh", "-c", "cat; echo eof")
		if err != nil {
			t.Fatal(err)
		}
		if out != in+"eof\n" {
			t.Fatalf("exec -i echoed %d bytes, want %d (tail %q)", len(out), len(in)+4, out[max(0, len(out)-40):])
		}
		if out := p.must(t, "exec", "sleeper", "echo", "no stdin"); strings.TrimSpace(out) != "no stdin" {
			t.Fatalf("exec printed %q", out)
		}
	})

	t.Run("attach", func(t *testing.T) {
		p.must(t, "run", "-d", "-i", "--name", "reader", img, "sh", "-c", "read line; echo got:$line")
		out, err := p.podman(strings.NewReader("through attach\n"), "attach", "reader")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "got:through attach") {
			t.Fatalf("attach printed %q", out)
		}
	})

	t.Run("logs -f", func(t *testing.T) {
		p.must(t, "run", "-d", "--name", "talker", img, "sh", "-c", "echo first; sleep 3; echo second")
		began := time.Now()
		out := p.must(t, "logs", "-f", "talker")
		if out != "first\nsecond\n" {
			t.Fatalf("logs -f printed %q", out)
		}
		if time.Since(began) < 2*time.Second {
			t.Errorf("logs -f returned after %s, before the container ended", time.Since(began))
		}
	})

	t.Run("build", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM "+img+"\nCOPY payload.txt /payload.txt\nRUN wc -c < /payload.txt > /size\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "payload.txt"), []byte(strings.Repeat("x", 1<<20)), 0o644)
		p.must(t, "build", "-t", "skiff-test/built:1", dir)
		if out := p.must(t, "run", "--rm", "skiff-test/built:1", "cat", "/size"); strings.TrimSpace(out) != "1048576" {
			t.Fatalf("the built image has %q", out)
		}
	})

	t.Run("bind mounts and volumes", func(t *testing.T) {
		sub := filepath.Join(p.shared, "sub")
		// -v and --mount go into the SpecGenerator's mounts: translated to /mnt/elsewhere/sub.
		if out := p.must(t, "run", "--rm", "-v", sub+":/d", img, "cat", "/d/f"); out != "from the host\n" {
			t.Fatalf("-v read %q", out)
		}
		if out := p.must(t, "run", "--rm", "--mount", "type=bind,src="+sub+",dst=/d", img, "sh", "-c", "cat /d/f; echo back > /d/g"); out != "from the host\n" {
			t.Fatalf("--mount read %q", out)
		}
		if b, _ := os.ReadFile(filepath.Join(sub, "g")); string(b) != "back\n" {
			t.Errorf("the host reads %q from what the container wrote", b)
		}
		// A local volume bound to a host folder: its device is translated too.
		p.must(t, "volume", "create", "--opt", "type=none", "--opt", "o=bind", "--opt", "device="+sub, "hostvol")
		if out := p.must(t, "run", "--rm", "-v", "hostvol:/v", img, "cat", "/v/f"); out != "from the host\n" {
			t.Fatalf("the bind volume read %q", out)
		}
		p.must(t, "volume", "create", "plain")
		if out := p.must(t, "run", "--rm", "-v", "plain:/v", img, "sh", "-c", "echo kept > /v/k && cat /v/k"); out != "kept\n" {
			t.Fatalf("a named volume: %q", out)
		}
		// A folder outside every share is refused in one line naming the shares.
		outside := t.TempDir()
		out, err := p.podman(nil, "run", "--rm", "-v", outside+":/d", img, "ls", "/d")
		if err == nil || !strings.Contains(out, "not shared") || !strings.Contains(out, p.shared) {
			t.Fatalf("an unshared folder: %v\n%s", err, out)
		}
		out, err = p.podman(nil, "volume", "create", "--opt", "type=none", "--opt", "o=bind", "--opt", "device="+outside, "badvol")
		if err == nil || !strings.Contains(out, "not shared") {
			t.Fatalf("a volume of an unshared folder: %v\n%s", err, out)
		}
		// Skiff's own data is refused whatever the shares say.
		out, err = p.podman(nil, "run", "--rm", "--mount", "type=bind,src="+e.Home+",dst=/d", img, "ls", "/d")
		if err == nil || !strings.Contains(out, "never shared") {
			t.Fatalf("a bind of the Skiff home: %v\n%s", err, out)
		}
	})

	t.Run("published port", func(t *testing.T) {
		port := machinetest.FreePort(t)
		p.must(t, "run", "-d", "--name", "web", "-p", fmt.Sprintf("127.0.0.1:%d:8080", port), img,
			"sh", "-c", "mkdir -p /www && echo served-by-podman > /www/index.html && httpd -f -p 8080 -h /www")
		url := fmt.Sprintf("http://127.0.0.1:%d/", port)
		var body string
		machinetest.Eventually(t, 60*time.Second, "the published port to answer on the host", func() bool {
			resp, err := http.Get(url)
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			body = string(b)
			return resp.StatusCode == 200
		})
		if strings.TrimSpace(body) != "served-by-podman" {
			t.Fatalf("the published port served %q", body)
		}
	})

	// rm removes the system connection.
	e.Must("machine", "rm", "-f")
	conns, err = exec.Command("podman", "system", "connection", "list", "--format", "{{.Name}}").CombinedOutput()
	if err != nil || strings.Contains(string(conns), "skiff") {
		t.Errorf("podman's connections after rm: %v\n%s", err, conns)
	}
}
