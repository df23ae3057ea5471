package netgroup

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"
)

func TestAllocate(t *testing.T) {
	l, err := Allocate(nil)
	if err != nil || l.Address != "198.19.100.2" || l.MAC != "5a:94:ef:13:64:02" {
		t.Fatalf("first lease = %+v, %v", l, err)
	}
	l, err = Allocate([]string{"198.19.100.2", "198.19.100.4"})
	if err != nil || l.Address != "198.19.100.3" {
		t.Fatalf("lease = %+v, %v; want the lowest free address", l, err)
	}
	var used []string
	for i := 2; i < 255; i++ {
		used = append(used, "198.19.100."+itoa(i))
	}
	if _, err := Allocate(used); !errors.Is(err, ErrFull) {
		t.Fatalf("full group: err = %v", err)
	}
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

var secrets = map[string][]byte{"a": []byte("secret-a"), "b": []byte("secret-b"), "c": []byte("secret-c")}
var macs = map[string]string{"a": "5a:94:ef:13:64:02", "b": "5a:94:ef:13:64:03", "c": "5a:94:ef:13:64:04"}

func admit(h Hello) error {
	s, ok := secrets[h.Machine]
	if !ok || macs[h.Machine] != h.MAC || !CheckProof(s, "g", h) {
		return errors.New("not a member")
	}
	return nil
}

func startSwitch(t *testing.T, sock string) (stop func()) {
	t.Helper()
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	sw := &Switch{Admit: admit, Logf: t.Logf}
	go func() { done <- sw.Serve(ctx, l) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}
}

// vmEnd attaches a member as a VM would and returns the VM's side of its NIC.
func vmEnd(t *testing.T, ctx context.Context, sock, name string) net.Conn {
	m := &Member{
		Dial:  func(ctx context.Context) (net.Conn, error) { return (&net.Dialer{}).DialContext(ctx, "unix", sock) },
		Hello: Hello{Machine: name, MAC: macs[name], Proof: ProofFor(secrets[name], "g", macs[name])},
		Logf:  t.Logf,
	}
	vm, host := net.Pipe()
	go m.ServeStream(ctx, host)
	t.Cleanup(func() { vm.Close() })
	return vm
}

func frame(dst, src string, payload string) []byte {
	d, _ := net.ParseMAC(dst)
	s, _ := net.ParseMAC(src)
	f := append(append(append([]byte{}, d...), s...), 0x08, 0x00)
	return append(f, payload...)
}

// expect reads frames from c until one carries want, failing after a while.
func expect(t *testing.T, c net.Conn, want []byte) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	for {
		f, err := readFrame(c, maxFrame)
		if err != nil {
			t.Fatalf("waiting for %q: %v", want[14:], err)
		}
		if bytes.Equal(f, want) {
			return
		}
	}
}

// expectNone fails if c receives a frame carrying payload within a short while.
func expectNone(t *testing.T, c net.Conn, payload string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	defer c.SetReadDeadline(time.Time{})
	for {
		f, err := readFrame(c, maxFrame)
		if err != nil {
			return
		}
		if bytes.HasSuffix(f, []byte(payload)) {
			t.Fatalf("received %q, which should not have arrived", payload)
		}
	}
}

// sendUntil sends f from 'from' until 'to' receives it: the members connect to the
// switch in the background, and frames sent before that are lost.
func sendUntil(t *testing.T, from, to net.Conn, f []byte) {
	t.Helper()
	got := make(chan struct{})
	go func() {
		for {
			select {
			case <-got:
				return
			case <-time.After(50 * time.Millisecond):
				from.SetWriteDeadline(time.Now().Add(time.Second))
				if writeFrame(from, f) != nil {
					return
				}
			}
		}
	}()
	expect(t, to, f)
	close(got)
}

func TestSwitch(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	stop := startSwitch(t, sock)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b, c := vmEnd(t, ctx, sock, "a"), vmEnd(t, ctx, sock, "b"), vmEnd(t, ctx, sock, "c")
	// Drain c so that the switch never holds frames for it.
	bcast := frame("ff:ff:ff:ff:ff:ff", macs["a"], "hello all")
	sendUntil(t, a, b, bcast)
	expect(t, c, bcast)

	uni := frame(macs["b"], macs["a"], "to b only")
	sendUntil(t, a, b, uni)
	expectNone(t, c, "to b only")

	// A member cannot send from another's MAC.
	spoof := frame(macs["b"], macs["c"], "spoofed")
	writeFrame(a, spoof)
	expectNone(t, b, "spoofed")

	// The switch restarts: members reconnect by themselves.
	stop()
	stop = startSwitch(t, sock)
	defer stop()
	again := frame(macs["a"], macs["b"], "after restart")
	sendUntil(t, b, a, again)
}

func TestSwitchRefusesStrangers(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	defer startSwitch(t, sock)()
	m := &Member{
		Dial:  func(ctx context.Context) (net.Conn, error) { return net.Dial("unix", sock) },
		Hello: Hello{Machine: "a", MAC: macs["a"], Proof: ProofFor([]byte("wrong"), "g", macs["a"])},
	}
	if _, err := m.Connect(context.Background()); !errors.Is(err, ErrRefused) {
		t.Fatalf("wrong proof: err = %v", err)
	}
	m.Hello = Hello{Machine: "a", MAC: macs["b"], Proof: ProofFor(secrets["a"], "g", macs["b"])}
	if _, err := m.Connect(context.Background()); !errors.Is(err, ErrRefused) {
		t.Fatalf("another member's MAC: err = %v", err)
	}
}

func TestSwitchIdleExit(t *testing.T) {
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	sw := &Switch{Admit: admit, IdleExit: 100 * time.Millisecond}
	done := make(chan error, 1)
	go func() { done <- sw.Serve(context.Background(), l) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("an idle switch did not exit")
	}
}
