//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	skiffmachine "github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/machine/agentapi"
	"github.com/skiff-dev/skiff/machine/machinetest"
)

// forwardOn is the machine's forward with host port port, as `skiff machine inspect`
// lists it, or ok false.
func forwardOn(t *testing.T, m *suite, proto string, port int) (f agentapi.Forward, ok bool) {
	st, err := agentapi.NewClient(skiffmachine.Home{Root: m.Home}.Dir("default").Sock(skiffmachine.SockControl)).State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range st.Forwards {
		if _, p, _ := net.SplitHostPort(f.HostAddr); f.Proto == proto && p == strconv.Itoa(port) {
			return f, true
		}
	}
	return f, false
}

// TestHostPortHeldOnHost: a published port that a host program already serves on [::1]
// (where Linux would still let Skiff bind 127.0.0.1) is not taken; inspect says why, and
// the host program keeps its clients.
func TestHostPortHeldOnHost(t *testing.T) {
	m := machine(t)
	port := machinetest.FreePort(t)
	ip := "::1"
	ln, err := net.Listen("tcp6", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		ip = "127.0.0.1"
		if ln, err = net.Listen("tcp4", net.JoinHostPort(ip, strconv.Itoa(port))); err != nil {
			t.Fatal(err)
		}
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("host-program"))
			c.Close()
		}
	}()
	m.MustDocker("default", "run", "-d", "--name", "held", "-p", fmt.Sprintf("%d:80", port), img, "sh", "-c", fmt.Sprintf(page, "held"))
	defer m.DockerRun("default", "rm", "-f", "held")
	want := fmt.Sprintf("host port %d is in use on the host", port)
	machinetest.Eventually(t, 15*time.Second, "inspect to say "+want, func() bool {
		f, ok := forwardOn(t, m, "tcp", port)
		return ok && strings.HasPrefix(f.Error, want)
	})
	for _, a := range hostListeners(t, "tcp", port) {
		if !strings.Contains(a, ip) {
			t.Fatalf("the machine bound %s over the host program's %s", a, ip)
		}
	}
}

// TestGuestLoopbackNotMirrored: a listener on the guest's loopback (here from a
// `--network host` container) stays in the VM, while one on the guest's wildcard is
// mirrored.
func TestGuestLoopbackNotMirrored(t *testing.T) {
	m := machine(t)
	lo, wild := machinetest.FreePort(t), machinetest.FreePort(t)
	m.MustDocker("default", "run", "-d", "--name", "lo", "--network", "host", img, "sleep", "300")
	defer m.DockerRun("default", "rm", "-f", "lo")
	m.MustDocker("default", "exec", "-d", "lo", "nc", "-ll", "-s", "127.0.0.1", "-p", strconv.Itoa(lo), "-e", "echo", "hi")
	m.MustDocker("default", "exec", "-d", "lo", "nc", "-ll", "-p", strconv.Itoa(wild), "-e", "echo", "hi")
	waitListener(t, "tcp", wild, 10*time.Second)
	// Both listeners were in the same scan or the loopback one came first.
	time.Sleep(time.Second)
	if a := hostListeners(t, "tcp", lo); len(a) > 0 {
		t.Fatalf("the guest's 127.0.0.1:%d is mirrored on the host at %v", lo, a)
	}
	if f, ok := forwardOn(t, m, "tcp", lo); ok {
		t.Fatalf("inspect lists the guest's loopback listener: %+v", f)
	}
}
