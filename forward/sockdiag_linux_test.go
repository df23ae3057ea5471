package forward

import (
	"net"
	"sort"
	"testing"

	"golang.org/x/sys/unix"
)

// The diagnostics scan must see what the /proc tables show, on this machine's real sockets.
func TestDiagScanMatchesProcTables(t *testing.T) {
	tl, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	ul, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	// A connected UDP client is not a server and must not be listed.
	uc, err := net.Dial("udp4", ul.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	var want []Listener
	want = append(want, Listener{"tcp", "127.0.0.1", tl.Addr().(*net.TCPAddr).Port}, Listener{"udp", "127.0.0.1", ul.LocalAddr().(*net.UDPAddr).Port})
	if t6, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		defer t6.Close()
		want = append(want, Listener{"tcp", "::1", t6.Addr().(*net.TCPAddr).Port})
	}
	fd, err := openSockDiag()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	for _, p := range []string{"tcp", "udp"} {
		for _, fam := range []uint8{2, 10} {
			if _, err := diagListeners(fd, p, fam); err != nil {
				t.Fatalf("sock_diag %s/%d: %v", p, fam, err)
			}
		}
	}
	got, proc := set(scanTables()), set(scanProcNet())
	for _, w := range want {
		if !got[w] {
			t.Errorf("diagnostics scan misses %+v", w)
		}
	}
	if c := uc.LocalAddr().(*net.UDPAddr); got[Listener{"udp", "127.0.0.1", c.Port}] {
		t.Errorf("connected UDP client %v listed as a listener", c)
	}
	// Sockets may come and go between the two reads; compare only ours and the count.
	if len(got) != len(proc) {
		t.Errorf("diagnostics scan found %d listeners, /proc %d:\n%v\n%v", len(got), len(proc), keys(got), keys(proc))
	}
}

func set(ls []Listener) map[Listener]bool {
	m := map[Listener]bool{}
	for _, l := range ls {
		m[l] = true
	}
	return m
}

func keys(m map[Listener]bool) []string {
	var s []string
	for l := range m {
		s = append(s, l.Proto+" "+l.IP+" "+l.Key())
	}
	sort.Strings(s)
	return s
}
