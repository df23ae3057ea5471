package forward

import (
	"strings"
	"testing"
)

const procTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F90 0100007F:A2C4 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 20 4 30 10 -1
   3: 0111A8C0:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1 0000000000000000 100 0 0 10 0
`

const procUDP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  10: 00000000000000000000000000000000:14E9 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 5 2 0000000000000000 0
  11: 00000000000000000000000001000000:1388 00000000000000000000000001000000:A000 01 00000000:00000000 00:00000000 00000000     0        0 6 2 0000000000000000 0
`

func TestParseProcNetTCP(t *testing.T) {
	ls, err := ParseProcNet(strings.NewReader(procTCP), "tcp")
	if err != nil {
		t.Fatal(err)
	}
	want := []Listener{{"tcp", "127.0.0.1", 8080}, {"tcp", "0.0.0.0", 22}, {"tcp", "192.168.17.1", 53}}
	if len(ls) != len(want) {
		t.Fatalf("got %v, want %v", ls, want)
	}
	for i := range want {
		if ls[i] != want[i] {
			t.Errorf("listener %d = %v, want %v", i, ls[i], want[i])
		}
	}
}

func TestParseProcNetUDP6(t *testing.T) {
	ls, err := ParseProcNet(strings.NewReader(procUDP6), "udp")
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 || ls[0] != (Listener{"udp", "::", 5353}) {
		t.Fatalf("got %v, want one udp listener on [::]:5353 (the connected socket must be skipped)", ls)
	}
}

func TestForwardable(t *testing.T) {
	ex := map[int]bool{22: true}
	cases := []struct {
		l    Listener
		want bool
	}{
		{Listener{"tcp", "0.0.0.0", 80}, true},
		{Listener{"tcp", "127.0.0.1", 80}, true},
		{Listener{"tcp", "::", 80}, true},
		{Listener{"tcp", "192.168.127.2", 80}, true},
		{Listener{"tcp", "172.17.0.1", 80}, false}, // container bridge
		{Listener{"tcp", "0.0.0.0", 22}, false},    // the guest's sshd
	}
	for _, c := range cases {
		if got := Forwardable(c.l, "192.168.127.2", ex); got != c.want {
			t.Errorf("Forwardable(%v) = %v, want %v", c.l, got, c.want)
		}
	}
}

func TestGuestTarget(t *testing.T) {
	for l, want := range map[Listener]string{
		{"tcp", "0.0.0.0", 80}:   "127.0.0.1:80",
		{"tcp", "::", 80}:        "[::1]:80",
		{"tcp", "127.0.0.1", 81}: "127.0.0.1:81",
		{"udp", "10.0.0.5", 53}:  "10.0.0.5:53",
	} {
		if got := l.GuestTarget(); got != want {
			t.Errorf("%v.GuestTarget() = %q, want %q", l, got, want)
		}
	}
}

// Two guest sockets on one port must always resolve to the same one, IPv4 wildcard first.
func TestBetterIsATotalOrder(t *testing.T) {
	v4 := Listener{"tcp", "0.0.0.0", 80}
	v6 := Listener{"tcp", "::", 80}
	lo := Listener{"tcp", "127.0.0.1", 80}
	if !Better(v4, v6) || Better(v6, v4) {
		t.Error("the IPv4 wildcard must win over the IPv6 one, in both argument orders")
	}
	if !Better(v6, lo) || Better(lo, v6) {
		t.Error("a wildcard must win over loopback")
	}
}
