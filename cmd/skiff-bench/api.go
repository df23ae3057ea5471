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
	"strings"
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

// getOnce GETs path on the engine socket and discards the body; it returns the body's
// size and the time to its end.
func getOnce(sock, path string) (int64, time.Duration, error) {
	// No Accept-Encoding: the CLI asks for none, and the engine would gzip the stream.
	tr := &http.Transport{DisableCompression: true, ReadBufferSize: 64 << 10, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	defer tr.CloseIdleConnections()
	t0 := time.Now()
	resp, err := (&http.Client{Transport: tr}).Get("http://engine" + path)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return n, time.Since(t0), err
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
// the same engine in the same VM, alternating rounds: small requests, the cost of a new
// connection, and large streams, each with the CPU every hop spent on it.
func benchAPI(args []string) error {
	fs := flag.NewFlagSet("api", flag.ExitOnError)
	image, skiff := machineFlags(fs)
	n := fs.Int("requests", 2000, "requests per round")
	conc := fs.Int("concurrency", 8, "parallel connections")
	rounds := fs.Int("rounds", 3, "rounds per path")
	streamRounds := fs.Int("stream-rounds", 3, "rounds per path of the large streams")
	streamMB := fs.Int("stream-mb", 100, "MiB per large stream (docker cp in and out, logs, save); 0 skips them")
	buildMB := fs.Int("build-mb", 100, "MiB of build context (docker buildx build); 0 skips it")
	logDrivers := fs.String("log-drivers", "", "comma-separated log drivers, a logging container each for the docker logs stream (default: the engine's default driver)")
	profile := fs.String("profile", "", "also write CPU profiles of the host agent to this prefix (-ping.pprof: one more ping round; -stream.pprof: one more docker cp in)")
	inGuest := fs.String("inguest", "", "only load this engine socket and print \"req/s p50-ns\" (what runs inside the VM)")
	get := fs.String("get", "", "with -inguest: only GET this API path once, discard the body and print \"bytes ns\" (the engine answering a client in the guest)")
	emit := fs.Int("emit", 0, "only write this many MiB of log lines to stdout (what the logs container runs)")
	transportAB := fs.Bool("transport-ab", false, "also measure sockets of this program to the guest agent's engine service (no host agent): parked streams named before the first request is sent, and named with it, each passed through and through the engine proxy")
	fs.Parse(args)
	if *emit > 0 {
		return emitLines(os.Stdout, int64(*emit)<<20)
	}
	if *inGuest != "" && *get != "" {
		nb, el, err := getOnce(*inGuest, *get)
		if err != nil {
			return err
		}
		fmt.Println(nb, int64(el))
		return nil
	}
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
	var extra []struct{ name, sock string }
	if *transportAB {
		socks, stop, err := transportSockets(b, pm)
		if err != nil {
			return err
		}
		defer stop()
		extra = append(extra, socks...)
		for _, x := range socks {
			paths = append(paths, struct {
				name string
				run  func(n int) (apiResult, error)
			}{x.name, onHost(x.sock)})
		}
	}
	res := map[string][]apiResult{}
	hops := map[string][]hopCPU{}
	for _, p := range paths { // warm-up
		if _, err := p.run(200); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	for r := 0; r < *rounds; r++ {
		for _, p := range paths {
			h0, err := sampleHops(c, d)
			if err != nil {
				return err
			}
			x, err := p.run(*n)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			h1, err := sampleHops(c, d)
			if err != nil {
				return err
			}
			res[p.name] = append(res[p.name], x)
			hops[p.name] = append(hops[p.name], h1.since(h0))
			fmt.Printf("round %d %-12s %8.0f req/s  p50 %v\n", r, p.name, x.rps, x.p50.Round(time.Microsecond))
		}
	}
	if *profile != "" {
		if err := profileAgent(pm.api(), *profile+"-ping.pprof", func() error {
			return profileGuestAgent(c, *profile+"-guest-ping.pprof", func() error { _, err := paths[0].run(*n); return err })
		}); err != nil {
			return err
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
	// A new connection for every request, one at a time: what a docker CLI command pays
	// first (Skiff: the user-mode network's connect, the transport's handshake, the guest
	// agent's dial of the engine), against a request on a kept connection.
	setup, err := connectionCosts(append([]struct{ name, sock string }{{"skiff", d.EngineEndpoint()}, {"ssh-forward", sshSock}}, extra...), 50)
	if err != nil {
		return err
	}
	s, o, g := med(res["skiff"]), med(res["ssh-forward"]), med(res["in-guest"])
	fmt.Printf("\nGET /_ping, %d requests x %d rounds, %d connections, same VM:\n", *n, *rounds, *conc)
	fmt.Printf("  skiff socket:        %8.0f req/s  p50 %v\n", s.rps, s.p50.Round(time.Microsecond))
	fmt.Printf("  ssh-forwarded socket: %7.0f req/s  p50 %v\n", o.rps, o.p50.Round(time.Microsecond))
	fmt.Printf("  in the guest, on the engine's socket (no forwarding at all): %.0f req/s  p50 %v\n", g.rps, g.p50.Round(time.Microsecond))
	fmt.Printf("  ratio skiff/ssh: %.2fx requests/s (goal >= 1.2x), p50 %.2fx lower\n", s.rps/o.rps, float64(o.p50)/float64(s.p50))
	fmt.Printf("  share of the in-guest rate kept: skiff %.0f%% (goal >= 97%%), ssh %.0f%%\n", 100*s.rps/g.rps, 100*o.rps/g.rps)
	for _, x := range extra {
		m := med(res[x.name])
		fmt.Printf("  %s (this program to the guest, no host agent): %.0f req/s  p50 %v, %.2fx ssh\n", x.name, m.rps, m.p50.Round(time.Microsecond), m.rps/o.rps)
	}
	fmt.Printf("  CPU per request by hop (medians; on the parked* and proxy* paths the host hop is this program):\n")
	for _, p := range paths {
		fmt.Printf("    %-12s %s\n", p.name+":", medianHops(hops[p.name]).format(float64(*n), time.Microsecond, "µs"))
	}
	fmt.Printf("  one request at a time (p50): new connection each / kept connection / setup cost\n")
	names := []string{"skiff", "ssh-forward"}
	for _, x := range extra {
		names = append(names, x.name)
	}
	for _, name := range names {
		x := setup[name]
		fmt.Printf("    %-12s %v / %v / %v\n", name+":", x[0].Round(time.Microsecond), x[1].Round(time.Microsecond), (x[0] - x[1]).Round(time.Microsecond))
	}
	if *streamMB > 0 || *buildMB > 0 {
		return benchStreams(ctx, b, pm, c, sshSock, streamOptions{mb: *streamMB, buildMB: *buildMB, rounds: *streamRounds, profile: *profile, logDrivers: strings.FieldsFunc(*logDrivers, func(r rune) bool { return r == ',' })})
	}
	return nil
}

// connectionCosts is, for each socket, the median time of one GET /_ping on a new
// connection and on one kept connection, n of each, one at a time, the sockets taking
// turns so that a change in the host's load hits them alike.
func connectionCosts(socks []struct{ name, sock string }, n int) (map[string][2]time.Duration, error) {
	ping := func(c *http.Client) (time.Duration, error) {
		t0 := time.Now()
		resp, err := c.Get("http://engine/_ping")
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("ping: %s", resp.Status)
		}
		return time.Since(t0), nil
	}
	type path struct {
		dial     func(ctx context.Context, _, _ string) (net.Conn, error)
		keep     *http.Client
		fs, ks   []time.Duration
		closeAll func()
	}
	paths := make([]*path, len(socks))
	for i, s := range socks {
		sock := s.sock
		p := &path{dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}
		tr := &http.Transport{DialContext: p.dial}
		p.keep, p.closeAll = &http.Client{Timeout: time.Minute, Transport: tr}, tr.CloseIdleConnections
		defer p.closeAll()
		if _, err := ping(p.keep); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		paths[i] = p
	}
	for range n {
		for i, p := range paths {
			// A new transport per request, as a docker command makes: a connection of its
			// own, without "Connection: close" (which the docker CLI does not send either).
			tr := &http.Transport{DialContext: p.dial}
			f, err := ping(&http.Client{Timeout: time.Minute, Transport: tr})
			tr.CloseIdleConnections()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", socks[i].name, err)
			}
			k, err := ping(p.keep)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", socks[i].name, err)
			}
			p.fs, p.ks = append(p.fs, f), append(p.ks, k)
		}
	}
	out := map[string][2]time.Duration{}
	for i, p := range paths {
		out[socks[i].name] = [2]time.Duration{median(p.fs), median(p.ks)}
	}
	return out, nil
}
