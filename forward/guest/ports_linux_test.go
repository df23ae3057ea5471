package guest

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/forward"
)

// TestPortsStream: the stream reports a new listener and ends once the host goes away.
func TestPortsStream(t *testing.T) {
	host, guest := net.Pipe()
	a := &Agent{GuestIP: "192.0.2.1", Logf: t.Logf}
	done := make(chan struct{})
	go func() {
		a.ports(context.Background(), forward.ServicePorts, guest)
		close(done)
	}()
	sets := make(chan []forward.Listener, 16)
	go func() {
		sc := bufio.NewScanner(host)
		for sc.Scan() {
			var ls []forward.Listener
			if json.Unmarshal(sc.Bytes(), &ls) == nil {
				sets <- ls
			}
		}
		close(sets)
	}()
	select {
	case <-sets:
	case <-time.After(10 * time.Second):
		t.Fatal("no first listener set")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	deadline := time.After(20 * time.Second)
	for found := false; !found; {
		select {
		case ls := <-sets:
			for _, l := range ls {
				found = found || (l.Proto == "tcp" && l.Port == port)
			}
		case <-deadline:
			t.Fatalf("listener on port %d never reported", port)
		}
	}
	host.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not end after the host went away")
	}
}
