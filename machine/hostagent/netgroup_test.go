package hostagent

import (
	"context"
	"net"
	"reflect"
	"testing"

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
	holder.Close()
	a.retryGroupPorts(ctx)
	if refused() {
		t.Fatalf("the freed host port was not taken: %+v", pm.Status())
	}
}
