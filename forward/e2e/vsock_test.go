//go:build linux

package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/machine/machinetest"
)

// vsockProbe builds forward/e2e/vsockprobe into the shared folder and gives the guest the
// machine's secret next to it; it returns the guest's paths of both.
func vsockProbe(t *testing.T, m *suite) (probe, secret string) {
	t.Helper()
	probe = filepath.Join(m.homeDir, "vsockprobe")
	if _, err := os.Stat(probe); err != nil {
		build := exec.Command("go", "build", "-ldflags=-s -w", "-o", probe, "./forward/e2e/vsockprobe")
		build.Dir = machinetest.RepoRoot(t)
		build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build vsockprobe: %v\n%s", err, out)
		}
	}
	b, err := os.ReadFile(filepath.Join(m.Home, "machines", "default", "secret"))
	if err != nil {
		t.Fatal(err)
	}
	secret = filepath.Join(m.homeDir, "secret")
	if err := os.WriteFile(secret, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// The guest kernel's loopback transport carries vsock between two of its own sockets;
	// tun is what the network helper's device needs.
	m.Must("machine", "ssh", "--", "modprobe vsock_loopback && modprobe tun")
	return probe, secret
}

// TestVsockTransport drives the engine API and a published port through the guest agent's
// vsock listener with the host side's own transport client (running in the guest, over
// vsock_loopback): the medium vz, Hyper-V, WSL2 and QEMU with vhost-vsock use. The probe
// dials nothing but vsock, so this fails if the agent stops serving there.
func TestVsockTransport(t *testing.T) {
	m := machine(t)
	probe, secret := vsockProbe(t, m)
	api, port := machinetest.FreePort(t), machinetest.FreePort(t)
	// A container answering on a port published inside the guest; the bridge reaches it
	// only through the agent's tcp/ service.
	m.MustDocker("default", "run", "-d", "--name", "vsock-web", "-p", "18081:80", machinetest.TestImage, "sh", "-c", fmt.Sprintf(page, "vsock"))
	defer m.DockerRun("default", "rm", "-f", "vsock-web")
	m.Must("machine", "ssh", "--", fmt.Sprintf("setsid %s bridge -secret %s 0.0.0.0:%d=engine 0.0.0.0:%d=tcp/127.0.0.1:18081 </dev/null >/tmp/vsockprobe.log 2>&1 &", probe, secret, api, port))
	defer m.Run("machine", "ssh", "--", "pkill -f 'vsockprobe bridge'")
	// The guest's listeners reach the host like any other (TestGuestListener).
	waitListener(t, "tcp", api, 20*time.Second)
	waitListener(t, "tcp", port, 20*time.Second)
	host := fmt.Sprintf("tcp://127.0.0.1:%d", api)

	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/_ping", api))
	if err != nil {
		t.Fatalf("/_ping over vsock: %v (probe log: %s)", err, m.Must("machine", "ssh", "--", "cat /tmp/vsockprobe.log"))
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "OK" {
		t.Fatalf("/_ping over vsock: %s %q", resp.Status, body)
	}

	// An attached run with stdin: the client half-closes its side when the input ends and
	// must still get the container's output after that, and its exit code.
	in := strings.Repeat("through vsock\n", 2000)
	run := exec.Command(m.Docker, "-H", host, "run", "-i", "--rm", machinetest.TestImage, "sh", "-c", "wc -l; echo done; exit 3")
	run.Env = append(os.Environ(), "DOCKER_CONFIG="+filepath.Join(m.Home, "docker-config"))
	run.Stdin = strings.NewReader(in)
	out, err := run.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Fatalf("docker run -i over vsock: %v: %s", err, out)
	}
	if got := strings.Fields(string(out)); len(got) != 2 || got[0] != "2000" || got[1] != "done" {
		t.Fatalf("docker run -i over vsock printed %q, want 2000 lines counted and done", out)
	}

	// The published port, through the agent's tcp/ service on vsock.
	var page string
	machinetest.Eventually(t, 30*time.Second, "the published port over vsock", func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprint(c, "GET / HTTP/1.0\r\n\r\n")
		b, _ := io.ReadAll(c)
		page = string(b)
		return strings.Contains(page, "served-vsock")
	})

}

// TestVsockNetworkHelper runs the guest's frames-over-vsock network helper (Hyper-V and
// WSL2 --network user) against the host's user-mode network code, both in the guest over
// vsock_loopback: the helper's device, in a network namespace of its own, must reach the
// host side and be reached from it, also after the host side cut its stream (it
// reconnects), and a helper with the wrong secret is refused.
func TestVsockNetworkHelper(t *testing.T) {
	m := machine(t)
	probe, secret := vsockProbe(t, m)
	out, err := m.Run("machine", "ssh", "--", fmt.Sprintf("%s nethelper -secret %s", probe, secret))
	if err != nil || !strings.Contains(out, "ok both ways, and after a reconnect") {
		t.Fatalf("network helper over vsock: %v\n%s", err, out)
	}
}
