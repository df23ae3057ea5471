//go:build linux

package e2e

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	skiffmachine "github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/machine/agentapi"
	"github.com/skiff-dev/skiff/machine/machinetest"
	"github.com/skiff-dev/skiff/machine/machinetest/blob"
)

// hostListeners returns the local addresses listening on port (tcp or udp), from ss.
func hostListeners(t *testing.T, proto string, port int) []string {
	flag := "-ltnH"
	if proto == "udp" {
		flag = "-lunH"
	}
	out, err := exec.Command("ss", flag, fmt.Sprintf("sport = :%d", port)).Output()
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	var addrs []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) >= 4 {
			addrs = append(addrs, f[3])
		}
	}
	return addrs
}

func waitListener(t *testing.T, proto string, port int, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if a := hostListeners(t, proto, port); len(a) > 0 {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("no host %s listener on port %d after %s", proto, port, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func onlyLoopback(t *testing.T, addrs []string) {
	t.Helper()
	for _, a := range addrs {
		if !strings.HasPrefix(a, "127.0.0.1:") {
			t.Fatalf("forwarded port bound to %s; must be 127.0.0.1 only (all: %v)", a, addrs)
		}
	}
}

// page serves "served-NAME" over HTTP on port 80 of a container.
const page = "mkdir -p /www && echo served-%s > /www/index.html && httpd -f -p 80 -h /www"

func TestPublishedPorts(t *testing.T) {
	m := machine(t)
	p1, p2 := machinetest.FreePort(t), machinetest.FreePort(t)
	m.MustDocker("default", "run", "-d", "--name", "pub1", "-p", fmt.Sprintf("127.0.0.1:%d:80", p1), img, "sh", "-c", fmt.Sprintf(page, "one"))
	defer m.DockerRun("default", "rm", "-f", "pub1")
	m.MustDocker("default", "run", "-d", "--name", "pub2", "-p", fmt.Sprintf("%d:80", p2), img, "sh", "-c", fmt.Sprintf(page, "two"))
	defer m.DockerRun("default", "rm", "-f", "pub2")
	for port, want := range map[int]string{p1: "served-one", p2: "served-two"} {
		onlyLoopback(t, waitListener(t, "tcp", port, 10*time.Second))
		if got := strings.TrimSpace(httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", port), 30*time.Second)); got != want {
			t.Fatalf("port %d answered %q, want %q", port, got, want)
		}
	}
	// Removing the container removes the forward.
	m.MustDocker("default", "rm", "-f", "pub2")
	deadline := time.Now().Add(5 * time.Second)
	for len(hostListeners(t, "tcp", p2)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("port %d still forwarded 5s after its container went away", p2)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestForwardLatency measures how soon a new guest listener appears on the host.
func TestForwardLatency(t *testing.T) {
	m := machine(t)
	port := machinetest.FreePort(t)
	m.MustDocker("default", "run", "-d", "--name", "lat", "--network", "host", img, "sleep", "300")
	defer m.DockerRun("default", "rm", "-f", "lat")
	start := time.Now()
	m.MustDocker("default", "exec", "-d", "lat", "nc", "-ll", "-p", strconv.Itoa(port), "-e", "echo", "hi")
	// docker exec -d returns once the process started, so this bounds listener -> forward.
	waitListener(t, "tcp", port, 5*time.Second)
	t.Logf("forward appeared %s after docker exec returned (goal: within 1s of the listener)", time.Since(start).Round(time.Millisecond))
}

// TestGuestListener: a plain process listening in the guest (started over ssh, no
// container) is forwarded automatically.
func TestGuestListener(t *testing.T) {
	m := machine(t)
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal(err)
	}
	// The home share makes a host copy of busybox runnable in the guest.
	data, _ := os.ReadFile(bb)
	guestBB := filepath.Join(m.homeDir, "busybox")
	os.WriteFile(guestBB, data, 0o755)
	port := machinetest.FreePort(t)
	m.Must("machine", "ssh", "--", fmt.Sprintf("setsid %s nc -ll -p %d -e %s echo from-guest-listener </dev/null >/dev/null 2>&1 &", guestBB, port, guestBB))
	onlyLoopback(t, waitListener(t, "tcp", port, 5*time.Second))
	var got []byte
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(10 * time.Second))
			got, _ = io.ReadAll(c)
			c.Close()
			if len(got) > 0 {
				break
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if strings.TrimSpace(string(got)) != "from-guest-listener" {
		t.Fatalf("guest listener answered %q", got)
	}
	m.Run("machine", "ssh", "--", fmt.Sprintf("pkill -f 'nc -ll -p %d'", port))
}

func TestUDP(t *testing.T) {
	m := machine(t)
	port := machinetest.FreePort(t)
	m.MustDocker("default", "run", "-d", "--name", "udp", "-p", fmt.Sprintf("127.0.0.1:%d:5353/udp", port), img,
		"echod", "-udp", ":5353")
	defer m.DockerRun("default", "rm", "-f", "udp")
	onlyLoopback(t, waitListener(t, "udp", port, 10*time.Second))
	c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 100)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		c.Write([]byte("udp-ping\n"))
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if err == nil && strings.Contains(string(buf[:n]), "udp-ping") {
			return
		}
	}
	t.Fatal("no UDP echo through the forwarded port")
}

// TestPortStreamsLoad opens 100 parallel forwarded streams of 10MB each; every byte must
// arrive intact. The server is Go (a listen backlog like any real service), not busybox
// httpd, whose backlog of a few connections drops bursts before Skiff sees them.
func TestPortStreamsLoad(t *testing.T) {
	m := machine(t)
	port := machinetest.FreePort(t)
	const size = 10 << 20
	m.MustDocker("default", "run", "-d", "--name", "bulk", "-p", fmt.Sprintf("127.0.0.1:%d:80", port), img,
		"echod", "-bulk", ":80", "-size", strconv.Itoa(size))
	defer m.DockerRun("default", "rm", "-f", "bulk")
	waitListener(t, "tcp", port, 10*time.Second)
	want := sha256.Sum256(blob.Bytes(1, size))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	// The container may still be starting: wait for one full stream first.
	deadline := time.Now().Add(60 * time.Second)
	for {
		n, sum, err := fetch(addr)
		if err == nil && n == size && sum == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no good stream from the container within 60s: %d bytes, %v", n, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	began := time.Now()
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, sum, err := fetch(addr)
			if err != nil || n != size || sum != want {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("stream %d: %d bytes, digest ok %v, err %v", i, n, sum == want, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("figure: 100 parallel port-forward streams of %d MiB: %d errors, %s", size>>20, len(errs), time.Since(began).Round(100*time.Millisecond))
	if len(errs) > 0 {
		t.Fatalf("%d of 100 streams failed; first: %s", len(errs), errs[0])
	}
}

// fetch reads one whole stream from addr and returns its length and sha256.
func fetch(addr string) (int64, [32]byte, error) {
	c, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return 0, [32]byte{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	h := sha256.New()
	n, err := io.Copy(h, c)
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return n, sum, err
}

// TestAPILoad sends 1,000 concurrent requests through the engine socket.
func TestAPILoad(t *testing.T) {
	m := machine(t)
	sock := m.EngineSocket("default")
	client := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
		Dial:                func(_, _ string) (net.Conn, error) { return net.Dial("unix", sock) },
		MaxIdleConnsPerHost: 1000,
	}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	failures := 0
	var first string
	began := time.Now()
	for i := 0; i < 1000; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := "/_ping"
			if i%4 == 0 {
				path = "/v1.45/containers/json"
			}
			resp, err := client.Get("http://engine" + path)
			ok := err == nil && resp.StatusCode == 200
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if !ok {
				mu.Lock()
				failures++
				if first == "" {
					first = fmt.Sprint(err, resp)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("figure: 1000 concurrent API requests: %d errors, %s", failures, time.Since(began).Round(100*time.Millisecond))
	if failures > 0 {
		t.Fatalf("%d of 1000 concurrent API requests failed; first: %s", failures, first)
	}
}

// TestExplicitWildcardPublish: `-p 0.0.0.0:P:80` asks for every address, so the host end
// binds 0.0.0.0. Only the engine knows this (the guest's socket tables show 0.0.0.0 for a
// plain `-p P:80` too), so it also proves ports come from engine events, and that the
// forward dials the container itself rather than the engine's proxy in the guest.
func TestExplicitWildcardPublish(t *testing.T) {
	m := machine(t)
	port := machinetest.FreePort(t)
	m.MustDocker("default", "run", "-d", "--name", "wild", "-p", fmt.Sprintf("0.0.0.0:%d:80", port), img, "sh", "-c", fmt.Sprintf(page, "wild"))
	defer m.DockerRun("default", "rm", "-f", "wild")
	want := fmt.Sprintf("0.0.0.0:%d", port)
	machinetest.Eventually(t, 10*time.Second, "a host listener on "+want, func() bool {
		for _, a := range hostListeners(t, "tcp", port) {
			if a == want {
				return true
			}
		}
		return false
	})
	ip := strings.TrimSpace(m.MustDocker("default", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "wild"))
	st, err := agentapi.NewClient(skiffmachine.Home{Root: m.Home}.Dir("default").Sock(skiffmachine.SockControl)).State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range st.Forwards {
		if f.HostAddr == want {
			found = true
			if f.GuestAddr != net.JoinHostPort(ip, "80") {
				t.Fatalf("forward %s goes to %s; want the container at %s:80", want, f.GuestAddr, ip)
			}
		}
	}
	if !found {
		t.Fatalf("inspect lists no forward on %s: %+v", want, st.Forwards)
	}
	// Reachable on an address other than loopback, when the host has one.
	addr := "127.0.0.1"
	if a := nonLoopbackIPv4(); a != "" {
		addr = a
	}
	if got := strings.TrimSpace(httpGet(t, fmt.Sprintf("http://%s:%d/", addr, port), 30*time.Second)); got != "served-wild" {
		t.Fatalf("%s:%d answered %q", addr, port, got)
	}
}

// nonLoopbackIPv4 is one of the host's own addresses outside 127/8, or "".
func nonLoopbackIPv4() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String()
		}
	}
	return ""
}
