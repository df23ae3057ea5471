package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/skiff-dev/skiff/forward/usernet"
	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/vmm/qemu"
)

// The peers' second NIC: QEMU's own user-mode network (slirp) with a hostfwd rule.
const (
	slirpMAC     = "52:54:00:5c:1f:01"
	slirpGuestIP = "10.0.2.15"
	sinkImage    = "skiff-bench/sink:latest"
)

// benchPorts measures host->container MB/s through a published port three ways on one
// VM, alternating rounds: Skiff's forward, gvisor-tap-vsock's own forwarder (gvproxy's
// expose API) on the same embedded network, and QEMU's user-mode hostfwd on a second NIC.
func benchPorts(args []string) error {
	fs := flag.NewFlagSet("ports", flag.ExitOnError)
	image, skiff := machineFlags(fs)
	sizeMB := fs.Int("size", 128, "MiB per transfer")
	rounds := fs.Int("rounds", 3, "rounds per path")
	profile := fs.String("profile", "", "also write a CPU profile of the host agent during one more Skiff transfer to this file")
	sink := fs.String("sink", "", "serve as the byte sink on this address (what runs in the container)")
	fs.Parse(args)
	if *sink != "" {
		return serveSink(*sink)
	}
	guestPort, hostGV, hostSlirp, err := freePorts()
	if err != nil {
		return err
	}
	b, cleanup, err := newBench(*skiff)
	if err != nil {
		return err
	}
	defer cleanup()
	pm, rm, err := b.startPeerMachine("ports", *image, "2G", map[string]string{
		qemu.ExtraArgsEnv: fmt.Sprintf("-netdev user,id=slirp0,hostfwd=tcp:127.0.0.1:%d-%s:%d -device virtio-net-pci,netdev=slirp0,mac=%s,romfile=",
			hostSlirp, slirpGuestIP, guestPort, slirpMAC)})
	if err != nil {
		return err
	}
	defer rm()
	d := pm.Dir
	ctx := context.Background()
	if err := upSecondNIC(ctx, pm); err != nil {
		return err
	}
	if err := loadSink(ctx, d); err != nil {
		return err
	}
	if _, err := docker(ctx, d, nil, "run", "-d", "--name", "sink", "-p", fmt.Sprintf("%d:80", guestPort), sinkImage, "/skiff-bench", "ports", "-sink", ":80"); err != nil {
		return err
	}
	gv := pm.api()
	if err := exposeGV(gv, hostGV, guestPort); err != nil {
		return err
	}
	paths := []struct{ name, addr string }{
		{"skiff", fmt.Sprintf("127.0.0.1:%d", guestPort)},
		{"gvisor-forwarder", fmt.Sprintf("127.0.0.1:%d", hostGV)},
		{"qemu-hostfwd", fmt.Sprintf("127.0.0.1:%d", hostSlirp)},
	}
	// The container and Skiff's forward take a moment to appear; a small transfer on each
	// path proves it works end to end before anything is timed.
	for _, p := range paths {
		deadline := time.Now().Add(2 * time.Minute)
		for {
			_, err := transfer(p.addr, 1<<20)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	c, err := pm.ssh(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	size := int64(*sizeMB) << 20
	res := map[string][]float64{}
	hops := map[string][]hopCPU{}
	for r := 0; r < *rounds; r++ {
		for _, p := range paths {
			h0, err := sampleHops(c, d)
			if err != nil {
				return err
			}
			el, err := transfer(p.addr, size)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			h1, err := sampleHops(c, d)
			if err != nil {
				return err
			}
			hops[p.name] = append(hops[p.name], h1.since(h0))
			mbs := float64(size) / (1 << 20) / el.Seconds()
			res[p.name] = append(res[p.name], mbs)
			fmt.Printf("round %d %-17s %7.1f MB/s\n", r, p.name, mbs)
		}
	}
	if *profile != "" {
		if err := profileAgent(gv, *profile, func() error {
			return profileGuestAgent(c, strings.TrimSuffix(*profile, ".pprof")+"-guest.pprof", func() error { _, err := transfer(paths[0].addr, size); return err })
		}); err != nil {
			return err
		}
	}
	med := func(xs []float64) float64 {
		s := append([]float64(nil), xs...)
		sort.Float64s(s)
		return s[len(s)/2]
	}
	s, g, q := med(res["skiff"]), med(res["gvisor-forwarder"]), med(res["qemu-hostfwd"])
	best, bestName := g, "gvisor-forwarder"
	if q > g {
		best, bestName = q, "qemu-hostfwd"
	}
	fmt.Printf("\nhost -> container through a published port, %d MiB x %d rounds, median, same VM:\n", *sizeMB, *rounds)
	fmt.Printf("  skiff forward:                 %7.1f MB/s\n", s)
	fmt.Printf("  gvisor-tap-vsock forwarder:    %7.1f MB/s  (skiff %.2fx)\n", g, s/g)
	fmt.Printf("  qemu user-mode hostfwd:        %7.1f MB/s  (skiff %.2fx)\n", q, s/q)
	fmt.Printf("  ratio skiff / best peer (%s): %.2fx (goal >= 2x, issue 29)\n", bestName, s/best)
	fmt.Printf("  CPU per MiB by hop (median; guest bench: the container reading the bytes):\n")
	for _, p := range paths {
		fmt.Printf("    %-17s %s\n", p.name+":", medianHops(hops[p.name]).format(float64(*sizeMB), time.Millisecond, "ms"))
	}
	return nil
}

// freePorts picks three host ports that are free now: the guest port Skiff mirrors at the
// same number, and the host ends of the two peers.
func freePorts() (int, int, int, error) {
	var ps []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for len(ps) < 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, 0, 0, err
		}
		lns = append(lns, l)
		ps = append(ps, l.Addr().(*net.TCPAddr).Port)
	}
	return ps[0], ps[1], ps[2], nil
}

// upSecondNIC gives the guest's slirp NIC the address QEMU's hostfwd sends to. Only the
// subnet route: the guest's default route stays on Skiff's network.
func upSecondNIC(ctx context.Context, p *peerMachine) error {
	c, err := p.ssh(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	script := fmt.Sprintf(`set -e
dev=$(ip -o link | awk -F': ' '/%s/ {print $2}')
test -n "$dev" || { echo "no NIC with MAC %s"; ip -o link; exit 1; }
ip link set "$dev" up
ip addr add %s/24 dev "$dev"`, slirpMAC, slirpMAC, slirpGuestIP)
	if out, err := sess.CombinedOutput(script); err != nil {
		return fmt.Errorf("second NIC: %v: %s", err, out)
	}
	return nil
}

// docker runs the docker CLI against the machine's engine socket.
func docker(ctx context.Context, d machine.Dir, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+d.EngineEndpoint())
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// guestBinary is this program built static for the guest, so parts of a benchmark can run
// inside the VM.
func guestBinary(ctx context.Context) ([]byte, error) {
	dir, err := os.MkdirTemp("", "skb-bin")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "skiff-bench")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/skiff-bench")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build skiff-bench for the guest: %v: %s", err, out)
	}
	return os.ReadFile(bin)
}

// loadSink imports an image holding only this program, built static for the guest.
func loadSink(ctx context.Context, d machine.Dir) error {
	data, err := guestBinary(ctx)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "skiff-bench", Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg})
	tw.Write(data)
	if err := tw.Close(); err != nil {
		return err
	}
	_, err = docker(ctx, d, &buf, "import", "-", sinkImage)
	return err
}

// exposeGV asks gvisor-tap-vsock's forwarder to listen on the host and dial the guest
// port through the netstack, exactly as `gvproxy`'s API does for podman machine.
func exposeGV(c *http.Client, hostPort, guestPort int) error {
	body, _ := json.Marshal(map[string]string{"local": fmt.Sprintf("127.0.0.1:%d", hostPort),
		"remote": fmt.Sprintf("%s:%d", usernet.GuestIP, guestPort), "protocol": "tcp"})
	resp, err := c.Post("http://gv/services/forwarder/expose", "application/json", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("gvisor-tap-vsock expose: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("gvisor-tap-vsock expose: %s: %s", resp.Status, msg)
	}
	return nil
}

// transfer sends size bytes to the sink at addr and returns the time until the sink has
// counted them all (its answer comes after our EOF, so nothing is still in flight).
func transfer(addr string, size int64) (time.Duration, error) {
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Minute))
	for left := size; left > 0; {
		n := min(left, int64(len(buf)))
		if _, err := c.Write(buf[:n]); err != nil {
			return 0, err
		}
		left -= n
	}
	c.(*net.TCPConn).CloseWrite()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("sink answer: %w", err)
	}
	got, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
	if err != nil || got != size {
		return 0, fmt.Errorf("sink counted %q bytes, sent %d", strings.TrimSpace(line), size)
	}
	return time.Since(start), nil
}

// serveSink counts every byte of each connection and answers with the count.
func serveSink(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			// Big reads: the sink runs under emulation and should cost every path alike, little.
			buf := make([]byte, 1<<20)
			var n int64
			for {
				k, err := c.Read(buf)
				n += int64(k)
				if err != nil {
					break
				}
			}
			fmt.Fprintf(c, "%d\n", n)
		}()
	}
}

// profileAgent records the host agent's CPU profile while work runs.
func profileAgent(c *http.Client, path string, work func() error) error {
	type result struct {
		data []byte
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		resp, err := c.Get("http://gv/debug/pprof/profile?seconds=20")
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		ch <- result{data, err}
	}()
	time.Sleep(200 * time.Millisecond)
	if err := work(); err != nil {
		return err
	}
	r := <-ch
	if r.err != nil {
		return fmt.Errorf("profile: %w", r.err)
	}
	fmt.Printf("host agent CPU profile (20s, covering one more skiff transfer): %s\n", path)
	return os.WriteFile(path, r.data, 0o644)
}
