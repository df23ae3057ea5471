//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/forward/pathmap"
	"github.com/skiff-dev/skiff/machine/machinetest"
)

func state(e *machinetest.Env, name string) string {
	out, err := e.Run("machine", "inspect", name, "--format", "{{.Status.State}}")
	if err != nil {
		return "error: " + out
	}
	return strings.TrimSpace(out)
}

func pidOf(t *testing.T, path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// checkEmulatedCPU: under TCG the guest's CPU offers no ERMS or FSRM, with which its
// kernel and programs would copy memory a byte per emulated iteration (vmm/qemu cpuFor).
func checkEmulatedCPU(t *testing.T, e *machinetest.Env) {
	t.Helper()
	accel := strings.TrimSpace(e.Must("machine", "inspect", "--format", `{{index .Status.Agent.VM "accel"}}`))
	if accel != "tcg" {
		t.Logf("accelerator %q: the emulated CPU's flags are not checked", accel)
		return
	}
	flags := strings.Fields(e.Must("machine", "ssh", "--", "grep -m1 '^flags' /proc/cpuinfo"))
	if len(flags) < 10 {
		t.Fatalf("the guest's CPU flags: %q", flags)
	}
	for _, f := range flags {
		if f == "erms" || f == "fsrm" {
			t.Errorf("the emulated CPU offers %s: the guest copies memory with rep movsb, a byte per emulated iteration", f)
		}
	}
}

// checkCrun: crun runs the docker machine's containers. It is the engine's default
// runtime, a running container's state is crun's (runc's state files are another format),
// and BuildKit's RUN steps, which run "runc" (the image has only a link to crun by that
// name), succeed.
func checkCrun(t *testing.T, e *machinetest.Env) {
	t.Helper()
	if out := strings.TrimSpace(e.MustDocker("default", "info", "--format", "{{.DefaultRuntime}}")); out != "crun" {
		t.Errorf("the engine's default runtime is %q, want crun", out)
	}
	e.MustDocker("default", "run", "-d", "--name", "crunner", machinetest.TestImage, "sleep", "600")
	defer e.MustDocker("default", "rm", "-f", "crunner")
	out := strings.Fields(e.MustDocker("default", "inspect", "--format", "{{.HostConfig.Runtime}} {{.Id}}", "crunner"))
	if len(out) != 2 || out[0] != "crun" {
		t.Fatalf("container crunner's runtime and id: %q, want crun and its id", out)
	}
	if state, err := e.Run("machine", "ssh", "--", "crun --root /run/docker/runtime-runc/moby state "+out[1]); err != nil || !strings.Contains(state, `"status": "running"`) {
		t.Errorf("crun's state of the running container: %v: %s", err, state)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM "+machinetest.TestImage+"\nRUN echo built-by-crun > /f\nCMD [\"cat\", \"/f\"]\n"), 0o644)
	e.MustDocker("default", "build", "-t", "skiff-test/crun:1", dir)
	if out := e.MustDocker("default", "run", "--rm", "skiff-test/crun:1"); strings.TrimSpace(out) != "built-by-crun" {
		t.Errorf("the image a RUN step built printed %q, want built-by-crun", out)
	}
}

// checkLogs: containers log with the local driver (images/enginebuild.sh says why), and
// `docker logs` gives their output back whole and in order over the handed-over stream,
// stderr apart, with --tail honoured; a follower gets a lone line while the container
// writes nothing more (the engine's batched writes send without waiting for more).
func checkLogs(t *testing.T, e *machinetest.Env) {
	t.Helper()
	if out := strings.TrimSpace(e.MustDocker("default", "info", "--format", "{{.LoggingDriver}}")); out != "local" {
		t.Errorf("the engine's log driver is %q, want local", out)
	}
	e.MustDocker("default", "run", "--name", "logger", machinetest.TestImage, "sh", "-c", "seq 1 3000; echo oops >&2")
	defer e.MustDocker("default", "rm", "-f", "logger")
	var want strings.Builder
	for i := 1; i <= 3000; i++ {
		fmt.Fprintln(&want, i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var outb, errb bytes.Buffer
	cmd := e.DockerCmd(ctx, "default", "logs", "logger")
	cmd.Stdout, cmd.Stderr = &outb, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("docker logs: %v: %s", err, errb.String())
	}
	if outb.String() != want.String() {
		t.Errorf("docker logs gave %d bytes of stdout, want the %d the container wrote (1..3000)", outb.Len(), want.Len())
	}
	if errb.String() != "oops\n" {
		t.Errorf("docker logs' stderr: %q, want oops", errb.String())
	}
	if out := e.MustDocker("default", "logs", "--tail", "2", "logger"); out != "2999\n3000\n" {
		t.Errorf("docker logs --tail 2 gave %q", out)
	}
	e.MustDocker("default", "run", "-d", "--name", "follower", machinetest.TestImage, "sh", "-c", "echo first; exec sleep 600")
	defer e.MustDocker("default", "rm", "-f", "follower")
	f := e.DockerCmd(ctx, "default", "logs", "-f", "follower")
	stdout, err := f.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	defer f.Wait()
	defer f.Process.Kill()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "first\n" {
		t.Errorf("docker logs -f of a container that wrote one line: %q, %v", line, err)
	}
}

// firewallCheck runs a second dockerd in a network namespace of its own, whose iptables
// tables hold chains an earlier dockerd could have left (one with a rule, one with a jump
// to it, one empty), and prints that namespace's chains once its API listens (its socket
// is there before: dockerd makes it first and sets up the firewall after).
const firewallCheck = `set -e
iptables -t filter -N DOCKER-ISOLATION-STAGE-1
iptables -t filter -A DOCKER-ISOLATION-STAGE-1 -j RETURN
iptables -t nat -N DOCKER-INGRESS
iptables -t nat -N DOCKER
iptables -t nat -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
d=/tmp/fw-check
dockerd --data-root $d/data --exec-root $d/exec --pidfile $d/pid -H unix://$d/sock \
	--containerd /run/containerd/containerd.sock --containerd-namespace fw-check \
	--containerd-plugins-namespace fw-check-plugins --bridge none >$d.log 2>&1 &
for i in $(seq 120); do grep -q "API listen" $d.log && break; sleep 0.5; done
grep -q "API listen" $d.log || { tail -20 $d.log; exit 1; }
iptables -t filter -S; iptables -t nat -S
kill $!; wait $! || true`

// checkFirewall: the engine's start, with the image's patch to it (images/engine/patches),
// neither runs nft nor looks for moby 28's ipset rules on a fresh kernel (nf_tables and
// ip_set stay unloaded), and still removes the chains an earlier dockerd left where there
// are some.
func checkFirewall(t *testing.T, e *machinetest.Env) {
	t.Helper()
	// nf_tables would be loaded by nft, ip_set by the checks for moby 28's rules.
	if out, err := e.Run("machine", "ssh", "--", "grep -i nftables /var/log/engine.log; lsmod | grep -E '^(nf_tables|ip_set) '; true"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("the engine's start looked for what a fresh kernel cannot hold: %v\n%s", err, out)
	}
	out, err := e.Run("machine", "ssh", "--", "rm -rf /tmp/fw-check; mkdir /tmp/fw-check; unshare -n sh -c '"+firewallCheck+"'")
	if err != nil {
		t.Fatalf("a second dockerd in a namespace with stale chains: %v\n%s", err, out)
	}
	for _, stale := range []string{"-N DOCKER-ISOLATION-STAGE-1", "-N DOCKER-INGRESS"} {
		if strings.Contains(out, stale) {
			t.Errorf("dockerd left the stale chain %q:\n%s", stale, out)
		}
	}
	if !strings.Contains(out, "-N DOCKER-FORWARD") || !strings.Contains(out, "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER") {
		t.Errorf("dockerd did not set up its chains (DOCKER-FORWARD, the jump to DOCKER):\n%s", out)
	}
}

// checkHandOver: the guest agent hands the engine API streams over to dockerd (package
// handoff of images/engine) rather than copying them: while a stream from the host is
// open, dockerd itself holds a TCP connection from the host's end of the user-mode network.
func checkHandOver(t *testing.T, e *machinetest.Env) {
	t.Helper()
	c, err := net.Dial("unix", e.EngineSocket("default"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	fmt.Fprintf(c, "GET /events HTTP/1.1\r\nHost: docker\r\n\r\n")
	status, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.Contains(status, " 200 ") {
		t.Fatalf("an event stream through the engine socket: %q, %v", status, err)
	}
	out, err := e.Run("machine", "ssh", "--", "ss -Htnp state established")
	if err != nil {
		t.Fatalf("ss in the guest: %v\n%s", err, out)
	}
	if !strings.Contains(out, `(("dockerd",`) {
		t.Errorf("no TCP connection is dockerd's while an API stream is open: the guest agent copies the streams instead of handing them over\n%s", out)
	}
}

// TestLifecycle walks one machine through its whole life on a real VM.
func TestLifecycle(t *testing.T) {
	e := machinetest.New(t)
	e.Must("machine", "init", "--cpus", "2", "--memory", "2G", "--disk-size", "8G")
	if s := state(e, "default"); s != "stopped" {
		t.Fatalf("a new machine reads %q, want stopped", s)
	}

	// Two starts race: exactly one wins, the other says why it lost.
	var wg sync.WaitGroup
	outs := make([]string, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = e.Run("machine", "start")
		}()
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	wins := 0
	for i := range 2 {
		if errs[i] == nil {
			wins++
		} else if !strings.Contains(outs[i], "being started") && !strings.Contains(outs[i], "already running") && !strings.Contains(outs[i], "is starting") {
			t.Errorf("losing start gave an unclear error: %s", outs[i])
		}
	}
	if wins != 1 {
		t.Fatalf("%d of 2 concurrent starts succeeded, want exactly 1:\n%s\n---\n%s", wins, outs[0], outs[1])
	}
	if s := state(e, "default"); s != "running" {
		t.Fatalf("after start the machine reads %q", s)
	}

	if out := e.MustDocker("default", "version", "--format", "{{.Server.Version}}"); strings.TrimSpace(out) == "" {
		t.Fatal("docker version printed no server version")
	}
	e.LoadBusybox("default")
	if out := e.MustDocker("default", "run", "--rm", machinetest.TestImage, "echo", "hello from skiff"); strings.TrimSpace(out) != "hello from skiff" {
		t.Fatalf("docker run printed %q", out)
	}
	checkCrun(t, e)
	checkLogs(t, e)
	checkFirewall(t, e)
	checkHandOver(t, e)
	checkEmulatedCPU(t, e)
	// A login's home is the guest's own, never the host's shared home, where the host's
	// dotfiles would run in the guest (a host run as root shares its /root at /root).
	host, _ := os.UserHomeDir()
	guest := strings.TrimSpace(e.Must("machine", "ssh", "--", "echo $HOME"))
	if guest == "" || pathmap.Within(guest, host) {
		t.Fatalf("a login's home in the guest is %q, in the host's shared home %s", guest, host)
	}
	e.MustDocker("default", "volume", "create", "keepvol")
	e.MustDocker("default", "run", "--name", "keeper", "-v", "keepvol:/data", machinetest.TestImage, "sh", "-c", "echo precious > /data/f")
	checkKept := func(when string) {
		t.Helper()
		if out := e.MustDocker("default", "ps", "-a", "--filter", "name=keeper", "--format", "{{.Names}}"); strings.TrimSpace(out) != "keeper" {
			t.Fatalf("%s: container keeper is gone (ps: %q)", when, out)
		}
		if out := e.MustDocker("default", "run", "--rm", "-v", "keepvol:/data", machinetest.TestImage, "cat", "/data/f"); strings.TrimSpace(out) != "precious" {
			t.Fatalf("%s: the named volume lost its data: %q", when, out)
		}
	}

	// stop -> start keeps containers and volumes.
	e.Must("machine", "stop")
	if s := state(e, "default"); s != "stopped" {
		t.Fatalf("after stop the machine reads %q", s)
	}
	e.Must("machine", "start")
	checkKept("after stop and start")

	// kill -9 of the agent reads as crashed within 2s, and start recovers.
	dir := filepath.Join(e.Home, "machines", "default")
	syscall.Kill(pidOf(t, filepath.Join(dir, "agent.pid")), syscall.SIGKILL)
	crashDeadline := time.Now().Add(2 * time.Second)
	machinetest.Eventually(t, 2*time.Second, "crashed after kill -9 of the agent", func() bool { return state(e, "default") == "crashed" })
	if time.Now().After(crashDeadline) {
		t.Fatal("crash took longer than 2s to show")
	}
	out := e.Must("machine", "start")
	if !strings.Contains(out, "crashed") {
		t.Errorf("start after a crash did not say it recovered: %s", out)
	}
	checkKept("after agent crash")

	// kill -9 of QEMU reads as crashed too.
	syscall.Kill(pidOf(t, filepath.Join(dir, "vm.pid")), syscall.SIGKILL)
	machinetest.Eventually(t, 2*time.Second, "crashed after kill -9 of QEMU", func() bool { return state(e, "default") == "crashed" })
	e.Must("machine", "start")
	checkKept("after VM crash")

	// kill -9 of the guest's engine: the guest stops the machine cleanly, which reads as
	// crashed with the reason, and start recovers it with nothing lost.
	killed := time.Now()
	e.Must("machine", "ssh", "--", "pkill -9 -x dockerd")
	machinetest.Eventually(t, 60*time.Second, "crashed after kill -9 of the engine", func() bool { return state(e, "default") == "crashed" })
	t.Logf("figure: kill -9 of the guest engine -> crashed in %s", time.Since(killed).Round(100*time.Millisecond))
	if log, _ := os.ReadFile(filepath.Join(dir, "agent.log")); !strings.Contains(string(log), "the engine (dockerd) exited unexpectedly") {
		t.Errorf("the agent log does not say the engine died:\n%s", log)
	}
	if out := e.Must("machine", "start"); !strings.Contains(out, "crashed") {
		t.Errorf("start after the engine died did not say it recovered: %s", out)
	}
	checkKept("after the engine was killed")

	// rm refuses a running machine without -f; rm -f removes everything.
	if out, err := e.Run("machine", "rm"); err == nil || !strings.Contains(out, "stop it first") {
		t.Fatalf("rm of a running machine: err=%v out=%s", err, out)
	}
	e.Must("machine", "rm", "-f")
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("rm -f left the machine directory: %v", err)
	}
	if out := e.Must("machine", "list", "--format", "json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("list after rm: %s", out)
	}
}

// TestTwoMachines runs two machines at once, each with its own network and sockets. The
// first shares its folders over virtiofs (virtiofs_test.go).
func TestTwoMachines(t *testing.T) {
	e := machinetest.New(t)
	vfs := newVirtiofsShares(t)
	for _, n := range []string{"one", "two"} {
		args := []string{"machine", "init", n, "--cpus", "1", "--memory", "1G", "--disk-size", "4G", "--no-home-share"}
		if n == "one" {
			args = append(args, vfs.initArgs()...)
		}
		e.Must(args...)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, n := range []string{"one", "two"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := e.Run("machine", "start", n); err != nil {
				errs <- fmt.Errorf("start %s: %v\n%s", n, err, out)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if e.EngineSocket("one") == e.EngineSocket("two") {
		t.Fatal("two machines share an engine socket")
	}
	for _, n := range []string{"one", "two"} {
		e.LoadBusybox(n)
		e.MustDocker(n, "run", "--name", "only-in-"+n, machinetest.TestImage, "true")
	}
	// Each engine sees only its own container.
	for _, n := range []string{"one", "two"} {
		out := e.MustDocker(n, "ps", "-a", "--format", "{{.Names}}")
		if strings.TrimSpace(out) != "only-in-"+n {
			t.Errorf("machine %s lists %q", n, out)
		}
	}
	began := time.Now()
	vfs.check(t, e, "one")
	t.Logf("virtiofs checks took %s", time.Since(began).Round(time.Second))
	// Stopping one leaves the other running.
	vfs.checkStopped(t, e.Must("machine", "stop", "one"))
	if s := state(e, "two"); s != "running" {
		t.Fatalf("stopping one changed two to %q", s)
	}
	e.MustDocker("two", "ps")
	e.Must("machine", "rm", "one")
	if pids := virtiofsds(vfs.rw, vfs.ro); len(pids) > 0 {
		t.Fatalf("virtiofsd outlived rm: pids %v", pids)
	}
}

// TestPodmanEngine boots the same image with Podman's Docker-compatible API service and
// drives it with the docker CLI.
func TestPodmanEngine(t *testing.T) {
	e := machinetest.New(t)
	e.Must("machine", "init", "--engine", "podman", "--cpus", "1", "--memory", "1G", "--disk-size", "4G", "--no-home-share")
	e.Must("machine", "start")
	if out := e.MustDocker("default", "version", "--format", "{{.Server.Version}} {{range .Server.Components}}{{.Name}} {{end}}"); !strings.Contains(out, "Podman") {
		t.Fatalf("the engine is not Podman: %q", out)
	}
	e.LoadBusybox("default")
	if out := e.MustDocker("default", "run", "--rm", machinetest.TestImage, "echo", "hello from podman"); strings.TrimSpace(out) != "hello from podman" {
		t.Fatalf("docker run on podman printed %q", out)
	}
}
