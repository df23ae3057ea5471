package hostagent

import (
	"testing"

	"github.com/skiff-dev/skiff/machine"
)

func TestFileEventShares(t *testing.T) {
	h := machine.Home{Root: t.TempDir()}
	mounts := []machine.Mount{
		{HostPath: "/src", GuestPath: "/src"},
		{HostPath: "/ro", GuestPath: "/ro", ReadOnly: true},
		{HostPath: h.Root, GuestPath: "/skiffhome"}, // holds Skiff's data: Skiff's 9p server
	}
	for _, c := range []struct {
		spec machine.Spec
		want []string // tag:type
	}{
		{machine.Spec{ShareType: "9p", Mounts: mounts}, []string{"skiff0:9p", "skiff2:9p-transport"}},
		{machine.Spec{ShareType: "virtiofs", Mounts: mounts}, []string{"skiff0:virtiofs", "skiff2:9p-transport"}},
		{machine.Spec{ShareType: "9p", Mounts: mounts, NoFileEvents: true}, nil},
	} {
		a := &Agent{Dir: h.Dir("dev"), Spec: &c.spec}
		var got []string
		for _, s := range a.fileEventShares() {
			got = append(got, s.Tag+":"+s.Type)
		}
		if len(got) != len(c.want) || len(got) > 0 && got[0] != c.want[0] || len(got) > 1 && got[1] != c.want[1] {
			t.Errorf("%s (no file events: %v): %v, want %v", c.spec.ShareType, c.spec.NoFileEvents, got, c.want)
		}
	}
}
