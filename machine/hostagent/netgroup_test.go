package hostagent

import (
	"reflect"
	"testing"

	"github.com/skiff-dev/skiff/forward"
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
