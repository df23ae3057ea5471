package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/skiff-dev/skiff/forward"
	"github.com/skiff-dev/skiff/forward/transport"
	"github.com/skiff-dev/skiff/machine"
)

// vsockSourcePort is where the guest serves the bulk stream the benchmark reads through
// the agent's tcp/ service.
const vsockSourcePort = 7001

// benchVsock compares the agent's transport over vsock with the transport over the
// network, side by side: /_ping requests (one new stream each) and one bulk stream. This
// host has no vhost-vsock, so vsock is measured inside the guest over vsock_loopback, next
// to the guest's own TCP to the agent (the same kernel, another medium), and the network
// path from the host as the host agent uses it (a stream through the user-mode network).
func benchVsock(args []string) error {
	fs := flag.NewFlagSet("vsock", flag.ExitOnError)
	image, skiff := machineFlags(fs)
	n := fs.Int("n", 300, "/_ping requests per medium and round")
	mb := fs.Int("mb", 64, "MiB per bulk stream")
	rounds := fs.Int("rounds", 3, "rounds, each medium once per round")
	fs.Parse(args)
	b, cleanup, err := newBench(*skiff)
	if err != nil {
		return err
	}
	defer cleanup()
	p, rm, err := b.startPeerMachine("vsock", *image, "2G", map[string]string{})
	if err != nil {
		return err
	}
	defer rm()
	ctx := context.Background()
	c, err := p.sshWithBench(ctx, "/run/skb")
	if err != nil {
		return err
	}
	defer c.Close()
	secret, err := os.ReadFile(p.File(machine.FileSecret))
	if err != nil {
		return err
	}
	if err := guestUpload(c, secret, "/run/skb.secret"); err != nil {
		return err
	}
	// In braces: a backgrounded && list would keep the session's output open, and with it
	// the session.
	if _, err := guestRun(c, fmt.Sprintf("chmod 600 /run/skb.secret && modprobe vsock_loopback && { setsid /run/skb vsock-source -mb %d -addr 127.0.0.1:%d </dev/null >/dev/null 2>&1 & }", *mb, vsockSourcePort)); err != nil {
		return err
	}
	network := &transport.Client{Secret: secret, Raw: func(ctx context.Context) (net.Conn, error) { return p.dialGuest(ctx, 1024) }}
	results := map[string][][2]float64{}
	for r := 0; r < *rounds; r++ {
		out, err := guestRun(c, fmt.Sprintf("/run/skb vsock-guest -secret /run/skb.secret -n %d", *n))
		if err != nil {
			return err
		}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			var medium string
			var rps, mbs float64
			if _, err := fmt.Sscanf(l, "%s %f %f", &medium, &rps, &mbs); err != nil {
				return fmt.Errorf("guest said %q", l)
			}
			results[medium] = append(results[medium], [2]float64{rps, mbs})
		}
		rps, mbs, err := transportRates(network, *n)
		if err != nil {
			return fmt.Errorf("network path: %w", err)
		}
		results["network(host)"] = append(results["network(host)"], [2]float64{rps, mbs})
	}
	fmt.Printf("transport media, medians of %d rounds (%d /_ping each, %d MiB stream):\n", *rounds, *n, *mb)
	med := map[string][2]float64{}
	for _, m := range []string{"vsock(guest)", "tcp(guest)", "network(host)"} {
		med[m] = [2]float64{medianF(results[m], 0), medianF(results[m], 1)}
		fmt.Printf("  %-14s %8.0f req/s  %8.1f MB/s\n", m, med[m][0], med[m][1])
	}
	v, g, h := med["vsock(guest)"], med["tcp(guest)"], med["network(host)"]
	fmt.Printf("ratios: vsock/tcp in the guest %.2f req/s, %.2f MB/s; vsock(guest)/network(host) %.2f req/s, %.2f MB/s\n",
		v[0]/g[0], v[1]/g[1], v[0]/h[0], v[1]/h[1])
	return nil
}

// benchVsockGuest runs in the guest: the transport over vsock_loopback and over TCP.
func benchVsockGuest(args []string) error {
	fs := flag.NewFlagSet("vsock-guest", flag.ExitOnError)
	secretFile := fs.String("secret", "", "machine secret")
	n := fs.Int("n", 300, "/_ping requests per medium")
	fs.Parse(args)
	secret, err := os.ReadFile(*secretFile)
	if err != nil {
		return err
	}
	media := []struct {
		name string
		raw  transport.RawDialer
	}{
		{"vsock(guest)", transport.VsockDialer(transport.LocalCID, 1024)},
		{"tcp(guest)", func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", "192.168.127.2:1024")
		}},
	}
	for _, m := range media {
		rps, mbs, err := transportRates(&transport.Client{Raw: m.raw, Secret: secret}, *n)
		if err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		fmt.Printf("%s %f %f\n", m.name, rps, mbs)
	}
	return nil
}

// benchVsockSource serves the bulk stream in the guest.
func benchVsockSource(args []string) error {
	fs := flag.NewFlagSet("vsock-source", flag.ExitOnError)
	addr := fs.String("addr", "", "address to serve on")
	mb := fs.Int("mb", 64, "MiB per connection")
	fs.Parse(args)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	block := bytes.Repeat([]byte("skiff-bench-data"), 4096) // 64 KiB
	return transport.AcceptLoop(context.Background(), ln, func(c net.Conn) {
		defer c.Close()
		for i := 0; i < *mb*16; i++ {
			if _, err := c.Write(block); err != nil {
				return
			}
		}
	})
}

// transportRates measures one medium: /_ping through the engine service, one new stream
// per request, and the bulk source read through the tcp/ service.
func transportRates(d transport.Dialer, n int) (rps, mbs float64, err error) {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return d.Dial(ctx, forward.ServiceEngine) }}}
	start := time.Now()
	for i := 0; i < n; i++ {
		resp, err := client.Get("http://engine/_ping")
		if err != nil {
			return 0, 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, 0, fmt.Errorf("/_ping: %s", resp.Status)
		}
	}
	rps = float64(n) / time.Since(start).Seconds()
	c, err := d.Dial(context.Background(), fmt.Sprintf("%s127.0.0.1:%d", forward.PrefixTCP, vsockSourcePort))
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	start = time.Now()
	got, err := io.Copy(io.Discard, c)
	if err != nil {
		return 0, 0, err
	}
	return rps, float64(got) / 1e6 / time.Since(start).Seconds(), nil
}

func medianF(rs [][2]float64, i int) float64 {
	d := make([]time.Duration, len(rs))
	for k, r := range rs {
		d[k] = time.Duration(r[i] * 1000)
	}
	return float64(median(d)) / 1000
}
