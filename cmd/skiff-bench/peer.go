package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/skiff-dev/skiff/forward/usernet"
	"github.com/skiff-dev/skiff/machine"
)

// machineFlags are the flags of every benchmark that starts a machine.
func machineFlags(fs *flag.FlagSet) (image, skiff *string) {
	return fs.String("image", "images/out/amd64", "image directory"), fs.String("skiff", "bin/skiff", "skiff CLI")
}

// peerMachine is a machine started with the user-mode network's own API exposed
// (usernet.ServicesEnv), so that the peers Skiff is compared with can use the network the
// way they do at home: gvproxy's port forwarder and tunnel, instead of Skiff's transport.
type peerMachine struct {
	machine.Dir
	services string // unix socket of gvisor-tap-vsock's HTTP API
}

// startPeerMachine starts a machine with the network API and env set for its host agent.
func (b *bench) startPeerMachine(name, image, memory string, env map[string]string, initArgs ...string) (*peerMachine, func(), error) {
	services := filepath.Join(b.home, name+"-gv.sock")
	env[usernet.ServicesEnv] = services
	// The CLI's environment, and so the host agent's, is this process's.
	for k, v := range env {
		os.Setenv(k, v)
	}
	d, rm, err := b.startMachine(name, image, memory, initArgs...)
	for k := range env {
		os.Unsetenv(k)
	}
	if err != nil {
		return nil, nil, err
	}
	// The guest's own sshd listens on loopback only (the host reaches it through Skiff's
	// transport), so the peers get a second one on the VM's network, where Lima's and podman
	// machine's guests have theirs. Without -D it detaches, and the command returns.
	if err := b.run(nil, "machine", "ssh", name, "--", "/usr/sbin/sshd", "-p", fmt.Sprint(peerSSHPort), "-o", "ListenAddress=0.0.0.0"); err != nil {
		rm()
		return nil, nil, fmt.Errorf("the peers' sshd: %w", err)
	}
	return &peerMachine{Dir: d, services: services}, rm, nil
}

// peerSSHPort is the guest port of the peers' sshd.
const peerSSHPort = 2222

// api is an HTTP client for the network's API.
func (p *peerMachine) api() *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", p.services)
	}}}
}

// dialGuest opens a TCP stream to a guest port through the network's own tunnel (a
// netstack connection, as gvproxy's forwarded ports are): no Skiff transport or agent.
func (p *peerMachine) dialGuest(ctx context.Context, port int) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", p.services)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(c, "GET /tunnel?ip=%s&port=%d HTTP/1.1\r\nHost: gv\r\n\r\n", usernet.GuestIP, port)
	br := bufio.NewReader(c)
	ok := make([]byte, 2)
	if _, err := io.ReadFull(br, ok); err != nil || string(ok) != "OK" {
		c.Close()
		return nil, fmt.Errorf("gvisor-tap-vsock tunnel to guest port %d: %q %v", port, ok, err)
	}
	return &bufConn{Conn: c, r: br}, nil
}

type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// sshWithBench connects to the guest's sshd and uploads this program, built for the guest,
// to path, for the parts of a benchmark that run inside the VM.
func (p *peerMachine) sshWithBench(ctx context.Context, path string) (*ssh.Client, error) {
	c, err := p.ssh(ctx)
	if err != nil {
		return nil, err
	}
	bin, err := guestBinary(ctx)
	if err == nil {
		err = guestUpload(c, bin, path)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// ssh connects to the guest's sshd over the network's tunnel, as Lima and podman machine
// reach their guests' sshd through a forwarded port.
func (p *peerMachine) ssh(ctx context.Context) (*ssh.Client, error) {
	// The peers' sshd may still be starting (it detaches once bound, but the guest is
	// emulated, and on a host busy with other VMs a minute was seen not to be enough): a
	// reset is retried for a while.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		conn, err := p.dialGuest(ctx, peerSSHPort)
		if err == nil {
			var c *ssh.Client
			if c, err = guestSSH(p.Dir, conn); err == nil {
				return c, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
