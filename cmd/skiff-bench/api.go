package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/skiff-dev/skiff/machine"
)

// guestSSH opens an SSH client on conn to the guest's sshd with the machine's key and
// pinned host key.
func guestSSH(d machine.Dir, conn net.Conn) (*ssh.Client, error) {
	keyPEM, err := os.ReadFile(d.File(machine.FileSSHKey))
	if err != nil {
		return nil, err
	}
	signer, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, err
	}
	pub, err := os.ReadFile(d.File(machine.FileHostKey + ".pub"))
	if err != nil {
		return nil, err
	}
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey(pub)
	if err != nil {
		return nil, err
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, "guest", &ssh.ClientConfig{User: "root",
		Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: ssh.FixedHostKey(hostKey)})
	if err != nil {
		conn.Close()
		return nil, err
	}
	return ssh.NewClient(c, chans, reqs), nil
}

// sshForwardedSocket serves a unix socket whose connections are SSH channels to the guest
// engine socket: what `ssh -L local.sock:/run/docker.sock` does, and how podman machine
// and Lima bring the API to the host, their SSH connection reaching the guest's sshd
// through the user-mode network.
func sshForwardedSocket(ctx context.Context, p *peerMachine, path string) (func(), error) {
	client, err := p.ssh(ctx)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		client.Close()
		return nil, err
	}
	go func() {
		for {
			lc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				rc, err := client.Dial("unix", "/run/docker.sock")
				if err != nil {
					lc.Close()
					return
				}
				go func() { io.Copy(rc, lc); rc.Close() }()
				io.Copy(lc, rc)
				lc.Close()
			}()
		}
	}()
	return func() { ln.Close(); client.Close() }, nil
}

type apiResult struct {
	rps float64
	p50 time.Duration
}

// pingLoad sends n GET /_ping over conc keep-alive connections to the socket.
func pingLoad(sock string, n, conc int) (apiResult, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: conc, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Minute}
	lat := make([]time.Duration, n)
	var mu sync.Mutex
	var firstErr error
	next := 0
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				t0 := time.Now()
				resp, err := client.Get("http://engine/_ping")
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != 200 {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("ping: %v", err)
					}
					mu.Unlock()
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return apiResult{}, firstErr
	}
	el := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return apiResult{rps: float64(n) / el.Seconds(), p50: lat[n/2]}, nil
}

// benchAPI compares the engine API through Skiff's socket with an ssh-forwarded socket to
// the same engine in the same VM, alternating rounds.
func benchAPI(args []string) error {
	fs := flag.NewFlagSet("api", flag.ExitOnError)
	image, skiff := machineFlags(fs)
	n := fs.Int("requests", 2000, "requests per round")
	conc := fs.Int("concurrency", 8, "parallel connections")
	rounds := fs.Int("rounds", 3, "rounds per path")
	inGuest := fs.String("inguest", "", "only load this engine socket and print \"req/s p50-ns\" (what runs inside the VM)")
	fs.Parse(args)
	if *inGuest != "" {
		x, err := pingLoad(*inGuest, *n, *conc)
		if err != nil {
			return err
		}
		fmt.Println(x.rps, int64(x.p50))
		return nil
	}
	b, cleanup, err := newBench(*skiff)
	if err != nil {
		return err
	}
	defer cleanup()
	ctx := context.Background()
	pm, rm, err := b.startPeerMachine("api", *image, "2G", map[string]string{})
	if err != nil {
		return err
	}
	defer rm()
	d := pm.Dir
	sshSock := filepath.Join(b.home, "ssh-docker.sock")
	stop, err := sshForwardedSocket(ctx, pm, sshSock)
	if err != nil {
		return err
	}
	defer stop()
	// The same load from inside the VM, straight on the engine's socket: what the engine
	// alone costs, the ceiling for any path from the host.
	c, err := pm.sshWithBench(ctx, "/tmp/skiff-bench")
	if err != nil {
		return err
	}
	defer c.Close()
	onHost := func(sock string) func(int) (apiResult, error) {
		return func(n int) (apiResult, error) { return pingLoad(sock, n, *conc) }
	}
	paths := []struct {
		name string
		run  func(n int) (apiResult, error)
	}{
		{"skiff", onHost(d.EngineEndpoint())},
		{"ssh-forward", onHost(sshSock)},
		{"in-guest", func(n int) (apiResult, error) {
			out, err := guestRun(c, fmt.Sprintf("/tmp/skiff-bench api -inguest /run/docker.sock -requests %d -concurrency %d", n, *conc))
			var x apiResult
			var ns int64
			if err == nil {
				_, err = fmt.Sscan(out, &x.rps, &ns)
			}
			x.p50 = time.Duration(ns)
			return x, err
		}},
	}
	res := map[string][]apiResult{}
	for _, p := range paths { // warm-up
		if _, err := p.run(200); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	for r := 0; r < *rounds; r++ {
		for _, p := range paths {
			x, err := p.run(*n)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			res[p.name] = append(res[p.name], x)
			fmt.Printf("round %d %-12s %8.0f req/s  p50 %v\n", r, p.name, x.rps, x.p50.Round(time.Microsecond))
		}
	}
	med := func(xs []apiResult) apiResult {
		sort.Slice(xs, func(i, j int) bool { return xs[i].rps < xs[j].rps })
		m := xs[len(xs)/2]
		ps := make([]time.Duration, len(xs))
		for i, x := range xs {
			ps[i] = x.p50
		}
		m.p50 = median(ps)
		return m
	}
	s, o, g := med(res["skiff"]), med(res["ssh-forward"]), med(res["in-guest"])
	fmt.Printf("\nGET /_ping, %d requests x %d rounds, %d connections, same VM:\n", *n, *rounds, *conc)
	fmt.Printf("  skiff socket:        %8.0f req/s  p50 %v\n", s.rps, s.p50.Round(time.Microsecond))
	fmt.Printf("  ssh-forwarded socket: %7.0f req/s  p50 %v\n", o.rps, o.p50.Round(time.Microsecond))
	fmt.Printf("  in the guest, on the engine's socket (no forwarding at all): %.0f req/s  p50 %v\n", g.rps, g.p50.Round(time.Microsecond))
	fmt.Printf("  ratio skiff/ssh: %.2fx requests/s (goal >= 2x), p50 %.2fx lower\n", s.rps/o.rps, float64(o.p50)/float64(s.p50))
	fmt.Printf("  share of the in-guest rate kept: skiff %.0f%%, ssh %.0f%%\n", 100*s.rps/g.rps, 100*o.rps/g.rps)
	return nil
}
