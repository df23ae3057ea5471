package forward

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestListenWatch needs root, BPF and a cgroup2 mount; it says why where they are missing.
func TestListenWatch(t *testing.T) {
	w, err := NewListenWatch()
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) || (err != nil && os.Geteuid() != 0) {
		t.Skipf("no BPF listen hooks here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	drain := func() {
		for {
			select {
			case <-w.C():
			case <-time.After(200 * time.Millisecond):
				return
			}
		}
	}
	expect := func(what string) {
		t.Helper()
		select {
		case <-w.C():
		case <-time.After(10 * time.Second):
			t.Fatalf("no event for %s", what)
		}
	}
	drain()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	expect("a TCP listen")
	drain()
	ln.Close()
	expect("a TCP listener's close")
	drain()
	pc, err := net.ListenPacket("udp", "[::1]:0")
	if err != nil {
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	expect("a UDP bind")
	drain()
	pc.Close()
	expect("a UDP socket's close")
	// A connection's own state changes are no news.
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	drain()
	// The watch sees the whole machine: where other processes bind meanwhile, the
	// silence below cannot be told.
	select {
	case <-w.C():
		t.Skip("other processes on this machine listen or bind now; the check that connections are no news is left out")
	case <-time.After(time.Second):
	}
	for i := 0; i < 5; i++ {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	select {
	case <-w.C():
		t.Fatal("connections to a listener were taken for listen events")
	case <-time.After(500 * time.Millisecond):
	}
}
