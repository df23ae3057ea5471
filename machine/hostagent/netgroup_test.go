package hostagent

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/forward"
	"github.com/skiff-dev/skiff/forward/hostports"
	"github.com/skiff-dev/skiff/machine"
)

func TestGroupListeners(t *testing.T) {
	ls := []forward.Listener{
		{Proto: "udp", IP: "0.0.0.0", Port: 4789}, // the overlay's VXLAN
		{Proto: "tcp", IP: "::", Port: 8080},      // the routing mesh's placeholder
		{Proto: "udp", IP: "::", Port: 5353},
		{Proto: "tcp", IP: "0.0.0.0", Port: 80},
		{Proto: "tcp", IP: "::1", Port: 9000},
	}
	a := &Agent{Spec: &machine.Spec{}}
	if got := a.groupListeners(ls); !reflect.DeepEqual(got, ls) {
		t.Fatalf("a machine on no group had its listeners changed: %v", got)
	}
	a.Spec.NetworkGroup = "g"
	want := []forward.Listener{
		{Proto: "tcp", IP: "0.0.0.0", Port: 8080},
		{Proto: "udp", IP: "::", Port: 5353},
		{Proto: "tcp", IP: "0.0.0.0", Port: 80},
		{Proto: "tcp", IP: "::1", Port: 9000},
	}
	if got := a.groupListeners(ls); !reflect.DeepEqual(got, want) {
		t.Fatalf("group listeners:\n got %v\nwant %v", got, want)
	}
}

// A host port another program held is taken once it is free, without the guest's
// listeners changing: the other member of a swarm that served it has stopped.
func TestRetryGroupPorts(t *testing.T) {
	holder, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := holder.Addr().(*net.TCPAddr).Port
	pm := &hostports.Manager{Logf: t.Logf}
	defer pm.Close()
	a := &Agent{Spec: &machine.Spec{NetworkGroup: "g"}, ports: pm}
	ctx := context.Background()
	pm.Update(ctx, a.groupListeners([]forward.Listener{{Proto: "tcp", IP: "::", Port: port}}))
	refused := func() bool {
		st := pm.Status()
		return len(st) != 1 || st[0].Error != ""
	}
	if !refused() {
		t.Fatalf("a held host port was bound: %+v", pm.Status())
	}
	if !a.retryGroupPorts(ctx) {
		t.Fatal("retry reported no refused port while the port is held")
	}
	holder.Close()
	if a.retryGroupPorts(ctx) {
		t.Fatal("retry reported a refused port after taking it")
	}
	if refused() {
		t.Fatalf("the freed host port was not taken: %+v", pm.Status())
	}
}

func TestWatchMachines(t *testing.T) {
	root := filepath.Join(t.TempDir(), "machines")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changed, err := watchMachines(ctx, root, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	quiet := func(what string) {
		t.Helper()
		select {
		case <-changed:
			t.Fatalf("%s was reported as a change", what)
		case <-time.After(300 * time.Millisecond):
		}
	}
	heard := func(what string) {
		t.Helper()
		select {
		case <-changed:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s was not reported", what)
		}
		for len(changed) > 0 { // coalesced: at most one more
			<-changed
		}
	}
	dir := filepath.Join(root, "b")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	heard("a new machine's folder")
	time.Sleep(100 * time.Millisecond) // the event of the folder before the watch on it
	for len(changed) > 0 {
		<-changed
	}
	if err := os.WriteFile(filepath.Join(dir, machine.FileAgentLog), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	quiet("a log line")
	if err := os.WriteFile(filepath.Join(dir, machine.FileConfig), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	heard("a spec saved in the new machine's folder")
	if err := os.Remove(filepath.Join(dir, machine.FileConfig)); err != nil {
		t.Fatal(err)
	}
	heard("a spec removed")
}
