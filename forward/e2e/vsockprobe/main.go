//go:build linux

// Command vsockprobe runs inside a Skiff guest during the end-to-end tests and drives the
// host side's own code over vsock, with the guest kernel's vsock_loopback standing in for
// a hypervisor's socket device (this CI host has no vhost-vsock):
//
//	bridge LISTEN=SERVICE...  relays each TCP connection on LISTEN to SERVICE on the guest
//	                          agent, opened with the host's transport client over vsock
//	nethelper                 runs the host's user-mode network on vsock and the guest's
//	                          frames-over-vsock helper in a network namespace of its own,
//	                          and checks traffic both ways through them
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-dev/skiff/forward/guest"
	"github.com/skiff-dev/skiff/forward/transport"
	"github.com/skiff-dev/skiff/forward/usernet"
	"github.com/skiff-dev/skiff/images/guestinit"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("vsockprobe: ")
	if len(os.Args) < 2 {
		log.Fatal("usage: vsockprobe bridge|nethelper [flags]")
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	secretFile := fs.String("secret", "", "file holding the machine secret")
	cid := fs.Uint("cid", 1, "vsock CID of the agent (1: this guest, over vsock_loopback)")
	port := fs.Uint("port", 1024, "vsock port of the agent's transport")
	netPort := fs.Uint("net-port", 1025, "vsock port the network helper dials")
	fs.Parse(os.Args[2:])
	secret, err := os.ReadFile(*secretFile)
	if err != nil {
		log.Fatal(err)
	}
	vsockAgent := &transport.Client{Raw: transport.VsockDialer(uint32(*cid), uint32(*port)), Secret: secret}
	switch os.Args[1] {
	case "bridge":
		err = bridge(vsockAgent, fs.Args())
	case "nethelper":
		err = netHelper(secret, uint32(*netPort))
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		log.Fatal(err)
	}
}

func bridge(agent transport.Dialer, specs []string) error {
	if len(specs) == 0 {
		return errors.New("bridge: no LISTEN=SERVICE given")
	}
	for _, s := range specs {
		addr, service, ok := strings.Cut(s, "=")
		if !ok {
			return fmt.Errorf("bridge: %q is not LISTEN=SERVICE", s)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		go transport.AcceptLoop(context.Background(), ln, func(c net.Conn) {
			up, err := agent.Dial(context.Background(), service)
			if err != nil {
				log.Printf("bridge %s: %v", service, err)
				c.Close()
				return
			}
			transport.Splice(c, up)
		})
	}
	log.Printf("bridging %v over vsock", specs)
	select {}
}

// netHelper checks the frames-over-vsock network: a namespace whose only link is the
// helper's TAP device reaches the host side (the user-mode network's NAT to the host's
// loopback), and the host side reaches a listener in the namespace. A helper with the
// wrong secret is refused.
func netHelper(secret []byte, port uint32) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, err := usernet.New(usernet.Options{Secret: secret})
	if err != nil {
		return err
	}
	ln, err := transport.ListenVsock(port)
	if err != nil {
		return err
	}
	// Every stream the helper opens, so that one can be cut to see the helper reconnect.
	accepted := make(chan net.Conn, 8)
	go transport.AcceptLoop(ctx, ln, func(c net.Conn) {
		accepted <- c
		if err := n.ServeGuestStream(ctx, c); err != nil && ctx.Err() == nil {
			log.Printf("network: %v", err)
		}
	})
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go transport.AcceptLoop(ctx, echo, func(c net.Conn) { io.Copy(c, c); c.Close() })

	done := make(chan error, 1)
	inNS := make(chan net.Listener, 1)
	go func() {
		// The namespace belongs to this thread alone, which dies with the goroutine.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("unshare: %w", err)
			return
		}
		addr := netip.MustParsePrefix(usernet.GuestIP + "/24")
		gw := netip.MustParseAddr(usernet.GatewayIP)
		opt := guest.NetHelperOptions{CID: transport.LocalCID, Port: port, Iface: "eth0", MAC: usernet.GuestMAC, Logf: log.Printf,
			Configure: func(iface string) error { return guestinit.ConfigureLink(iface, usernet.MTU, addr, gw) }}
		bad := opt
		bad.Secret, bad.Iface = bytes.Repeat([]byte{7}, len(secret)), "eth9"
		if err := guest.RunNetHelper(ctx, bad); !errors.Is(err, transport.ErrUnauthenticated) {
			done <- fmt.Errorf("a helper with the wrong secret: got %v, want %v", err, transport.ErrUnauthenticated)
			return
		}
		opt.Secret = secret
		if err := guest.RunNetHelper(ctx, opt); err != nil {
			done <- err
			return
		}
		l, err := net.Listen("tcp", ":7777")
		if err != nil {
			done <- err
			return
		}
		inNS <- l
		c, err := net.DialTimeout("tcp", net.JoinHostPort(usernet.HostIP, fmt.Sprint(echo.Addr().(*net.TCPAddr).Port)), 30*time.Second)
		if err != nil {
			done <- fmt.Errorf("namespace -> host side: %w", err)
			return
		}
		done <- roundTrip(c, "out-through-the-helper")
	}()
	if err := <-done; err != nil {
		return err
	}
	l := <-inNS
	go transport.AcceptLoop(ctx, l, func(c net.Conn) { io.Copy(c, c); c.Close() })
	// The host side drops the helper's stream (an agent restart would): the helper opens a
	// new one, and the traffic below needs it.
	for len(accepted) > 0 {
		(<-accepted).Close()
	}
	select {
	case <-accepted:
	case <-time.After(30 * time.Second):
		return errors.New("the helper did not reconnect after its stream was cut")
	}
	c, err := n.DialGuest(ctx, 7777)
	if err != nil {
		return fmt.Errorf("host side -> namespace: %w", err)
	}
	if err := roundTrip(c, "in-through-the-helper"); err != nil {
		return err
	}
	fmt.Println("network helper: ok both ways, and after a reconnect")
	return nil
}

func roundTrip(c net.Conn, msg string) error {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("echo of %q: %w", msg, err)
	}
	if string(got) != msg {
		return fmt.Errorf("echo: got %q, want %q", got, msg)
	}
	return nil
}
