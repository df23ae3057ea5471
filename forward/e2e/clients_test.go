//go:build linux

package e2e

import (
	"bufio"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/machine/machinetest"
)

// The engines' own clients through Skiff's socket: the docker CLI's Compose v2 and buildx
// plugins (BuildKit's /session and /grpc hijacks and its file sync) and a container that
// talks to the engine through a bind-mounted /var/run/docker.sock.

// plugin fails the test unless the docker CLI has the plugin (installer/dev/deps.sh).
func plugin(t *testing.T, name string) {
	t.Helper()
	if out, err := exec.Command("docker", name, "version").CombinedOutput(); err != nil {
		t.Fatalf("docker %s is needed (installer/dev/deps.sh installs it): %v\n%s", name, err, out)
	}
}

// TestComposeV2 runs `docker compose up --build -d` with two services sharing a named
// volume, one serving a bind-mounted host folder on a published port, follows a service's
// log until a line arrives, and takes it down with its volume.
func TestComposeV2(t *testing.T) {
	plugin(t, "compose")
	m := machine(t)
	dir, err := os.MkdirTemp(m.homeDir, "compose")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.MkdirAll(filepath.Join(dir, "web"), 0o755)
	os.MkdirAll(filepath.Join(dir, "site"), 0o755)
	os.WriteFile(filepath.Join(dir, "web", "Dockerfile"), []byte("FROM "+img+"\nCOPY motd /motd\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "web", "motd"), []byte("built-into-image\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "site", "index.html"), []byte("from-host-folder\n"), 0o644)
	port := machinetest.FreePort(t)
	yml := fmt.Sprintf(`services:
  web:
    build: ./web
    image: skiff-test/compose-web
    command: ["sh", "-c", "cat /motd > /data/motd && httpd -f -p 80 -h /www"]
    volumes:
      - data:/data
      - ./site:/www:ro
    ports:
      - "127.0.0.1:%d:80"
  worker:
    image: skiff-test/compose-web
    depends_on: [web]
    command: ["sh", "-c", "while true; do echo worker-saw $$(cat /data/motd 2>/dev/null); sleep 1; done"]
    volumes:
      - data:/data
volumes:
  data:
`, port)
	os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(yml), 0o644)
	const project = "skiffv2"
	compose := func(ctx context.Context, args ...string) *exec.Cmd {
		cmd := m.DockerCmd(ctx, "default", append([]string{"compose", "-p", project}, args...)...)
		cmd.Dir = dir
		return cmd
	}
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := compose(ctx, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("docker compose %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run("up", "--build", "-d")
	down := true
	defer func() {
		if down {
			run("down", "-v")
		}
	}()
	if body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", port), 60*time.Second); strings.TrimSpace(body) != "from-host-folder" {
		t.Fatalf("the bind-mounted host folder served %q", body)
	}

	// logs -f: the worker's line, which reads what web wrote to the shared volume, arrives
	// while the command is still following.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	follow := compose(ctx, "logs", "-f", "--no-color", "worker")
	pipe, _ := follow.StdoutPipe()
	follow.Stderr = follow.Stdout
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var seen []string
	for found := false; !found; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("docker compose logs -f ended before the worker's line:\n%s", strings.Join(seen, "\n"))
			}
			seen = append(seen, l)
			found = strings.Contains(l, "worker-saw built-into-image")
		case <-ctx.Done():
			t.Fatalf("no worker line from docker compose logs -f:\n%s", strings.Join(seen, "\n"))
		}
	}
	follow.Process.Kill()
	follow.Wait()

	down = false
	run("down", "-v")
	vols := m.MustDocker("default", "volume", "ls", "-q", "--filter", "name="+project+"_data")
	ps := m.MustDocker("default", "ps", "-aq", "--filter", "label=com.docker.compose.project="+project)
	if strings.TrimSpace(vols+ps) != "" {
		t.Fatalf("down -v left volumes %q containers %q", vols, ps)
	}
}

// contextRE matches BuildKit's plain progress line for the context upload, as in
// "#5 transferring context: 104.87MB 3.2s done".
var contextRE = regexp.MustCompile(`transferring context: ([0-9.]+)([kMG]?B)`)

// contextMB is the largest context upload a build's plain progress reports, in MB.
func contextMB(progress string) float64 {
	unit := map[string]float64{"B": 1e-6, "kB": 1e-3, "MB": 1, "GB": 1e3}
	max := -1.0
	for _, m := range contextRE.FindAllStringSubmatch(progress, -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		if v*unit[m[2]] > max {
			max = v * unit[m[2]]
		}
	}
	return max
}

// TestBuildx builds a multi-stage Dockerfile with a cache mount from a 100 MB context with
// buildx and BuildKit through Skiff's socket; the 50 MB file .dockerignore names is not sent.
// The builtin Dockerfile frontend serves (no `# syntax=`: docker/dockerfile cannot be pulled).
func TestBuildx(t *testing.T) {
	plugin(t, "buildx")
	m := machine(t)
	dir := t.TempDir()
	gen := filepath.Join(dir, "gen")
	os.MkdirAll(gen, 0o755)
	sum := md5.New()
	chunk := make([]byte, 2<<20)
	for i := 0; i < 50; i++ { // 100 MB in 50 files, hashed in the order `cat /gen/*` reads them
		rand.Read(chunk)
		sum.Write(chunk)
		os.WriteFile(filepath.Join(gen, fmt.Sprintf("f%03d", i)), chunk, 0o644)
	}
	want := hex.EncodeToString(sum.Sum(nil))
	big := make([]byte, 50<<20)
	rand.Read(big)
	os.WriteFile(filepath.Join(dir, "ignored.bin"), big, 0o644)
	os.WriteFile(filepath.Join(dir, ".dockerignore"), []byte("ignored.bin\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(`FROM `+img+` AS build
ARG ROUND
RUN --mount=type=cache,target=/cache sh -c 'echo "$ROUND" >> /cache/rounds; wc -l < /cache/rounds > /rounds'
COPY gen /gen
RUN cat /gen/* | md5sum > /sum

FROM `+img+`
COPY --from=build /sum /rounds /out/
`), 0o644)
	build := func(round int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		start := time.Now()
		out, err := m.DockerCmd(ctx, "default", "buildx", "build", "--progress=plain", "--load",
			"--build-arg", fmt.Sprintf("ROUND=%d", round), "-t", "skiff-test/buildx", dir).CombinedOutput()
		if err != nil {
			t.Fatalf("docker buildx build: %v\n%s", err, out)
		}
		sent := contextMB(string(out))
		t.Logf("build %d: %.1fs, context sent %.2f MB", round, time.Since(start).Seconds(), sent)
		if round == 1 && (sent < 100 || sent > 120) {
			t.Fatalf("the context upload was %.2f MB, want the 104.9 MB of gen/ without the ignored 52 MB:\n%s", sent, out)
		}
		if round == 2 && sent > 10 {
			// BuildKit's file sync keeps what it has: an unchanged context is not sent again.
			t.Errorf("the unchanged context was sent again: %.2f MB", sent)
		}
	}
	build(1)
	// A second build with another ROUND reruns the cache-mount step: the mount keeps what the
	// first wrote.
	build(2)
	defer m.DockerRun("default", "rmi", "skiff-test/buildx")
	out := m.MustDocker("default", "run", "--rm", "skiff-test/buildx", "sh", "-c", "cat /out/sum /out/rounds")
	if !strings.Contains(out, want) {
		t.Fatalf("the context arrived changed: want md5 %s in\n%s", want, out)
	}
	if f := strings.Fields(out); len(f) != 3 || f[2] != "2" {
		// Seen once in CI (the sum right, 1 round) and not again in 3 runs here: what
		// BuildKit kept, and what the engine logged of cache mounts and its GC, show why.
		du, _ := m.DockerRun("default", "buildx", "du", "--verbose", "--filter", "type=exec.cachemount")
		log, _ := m.Run("machine", "ssh", "--", "grep -i -E 'cache dir|cache mount|prune|gc' /var/log/engine.log | tail -20")
		t.Fatalf("the cache mount did not keep the first build's round (want 2 rounds):\n%s\nBuildKit's cache mounts:\n%s\nthe engine's log of them:\n%s", out, du, log)
	}
}

// TestSocketMountedContainer runs the Testcontainers Ryuk pattern: a container that
// bind-mounts /var/run/docker.sock lists containers and starts one through it. Path
// translation must leave that path alone: it names the engine's socket in the VM.
func TestSocketMountedContainer(t *testing.T) {
	m := machine(t)
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "sockclient"), "./machine/machinetest/sockclient")
	build.Dir = machinetest.RepoRoot(t)
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build sockclient: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM "+img+"\nCOPY sockclient /bin/sockclient\n"), 0o644)
	m.MustDocker("default", "build", "-q", "-t", "skiff-test/sockclient", dir)
	defer m.DockerRun("default", "rmi", "skiff-test/sockclient")
	label := fmt.Sprintf("skiff-e2e-ryuk=%d", time.Now().UnixNano())
	defer func() {
		ids := strings.Fields(m.MustDocker("default", "ps", "-aq", "--filter", "label="+label))
		if len(ids) > 0 {
			m.DockerRun("default", append([]string{"rm", "-f"}, ids...)...)
		}
	}()
	name := fmt.Sprintf("skiff-ryuk-%d", time.Now().UnixNano())
	defer m.DockerRun("default", "rm", "-f", name)
	out := m.MustDocker("default", "run", "--name", name, "-v", "/var/run/docker.sock:/var/run/docker.sock",
		"skiff-test/sockclient", "sockclient", "-image", img, "-label", label)
	var listed int
	var child string
	var code int
	for _, l := range strings.Split(out, "\n") {
		fmt.Sscanf(l, "listed %d", &listed)
		fmt.Sscanf(l, "started %s exit %d", &child, &code)
	}
	if listed < 1 || child == "" || code != 0 {
		// It lists at least itself.
		t.Fatalf("the container did not list and start containers through the socket:\n%s", out)
	}
	if binds := strings.TrimSpace(m.MustDocker("default", "inspect", "--format", "{{json .HostConfig.Binds}}", name)); binds != `["/var/run/docker.sock:/var/run/docker.sock"]` {
		t.Fatalf("the engine was given the binds %s, want /var/run/docker.sock untranslated", binds)
	}
	if logs := m.MustDocker("default", "logs", child); strings.TrimSpace(logs) != "child-of-socket-ok" {
		t.Fatalf("the container started through the socket printed %q", logs)
	}
	if got := m.MustDocker("default", "inspect", "--format", "{{index .Config.Labels \"skiff-e2e-ryuk\"}}", child); !strings.HasPrefix(label, "skiff-e2e-ryuk="+strings.TrimSpace(got)) || strings.TrimSpace(got) == "" {
		t.Fatalf("the child's label is %q, want %s", got, label)
	}
}
