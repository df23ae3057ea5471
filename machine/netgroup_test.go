package machine

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/skiff-dev/skiff/forward/usernet/netgroup"
)

func groupSpec(name, group string) *Spec {
	return &Spec{Name: name, Backend: "qemu", CPUs: 1, MemoryMiB: 512, DiskGiB: 2, Engine: EngineDocker, NetworkGroup: group}
}

func TestGroupLeases(t *testing.T) {
	h := Home{Root: t.TempDir()}
	// Machines made at once still get addresses of their own.
	var wg sync.WaitGroup
	for _, n := range []string{"a", "b", "c", "d"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := groupSpec(n, "g")
			if err := h.withGroupLease(s, func() error { return h.Create(s) }); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	other := groupSpec("x", "other")
	if err := h.withGroupLease(other, func() error { return h.Create(other) }); err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for n, addr := range h.GroupHosts("g") {
		if prev, dup := seen[addr]; dup {
			t.Fatalf("%s and %s share %s", prev, n, addr)
		}
		seen[addr] = n
	}
	if len(seen) != 4 {
		t.Fatalf("group g: %v; want 4 members", h.GroupHosts("g"))
	}
	if got := h.GroupHosts("other"); got["x"] != "198.19.100.2" || len(got) != 1 {
		t.Fatalf("group other: %v", got)
	}

	// Leaving the group drops the lease; its address goes to the next machine.
	m := &Manager{Home: h}
	ctx := context.Background()
	b, _ := h.Dir("b").Spec()
	empty := ""
	res, err := m.Set(ctx, "b", Changes{NetworkGroup: &empty})
	if err != nil || res.Spec.GroupLease != nil || res.Spec.NetworkGroup != "" {
		t.Fatalf("leaving: %+v, %v", res, err)
	}
	g := "g"
	res, err = m.Set(ctx, "x", Changes{NetworkGroup: &g})
	if err != nil || res.Spec.GroupLease == nil || res.Spec.GroupLease.Address != b.GroupLease.Address {
		t.Fatalf("x joining g: %+v, %v; want b's old address %s", res.Spec.GroupLease, err, b.GroupLease.Address)
	}
	bad := "Bad/Name"
	if _, err := m.Set(ctx, "x", Changes{NetworkGroup: &bad}); err == nil {
		t.Fatal("a bad group name was taken")
	}
}

func TestAdmitGroupMember(t *testing.T) {
	h := Home{Root: t.TempDir()}
	for _, n := range []string{"a", "b"} {
		s := groupSpec(n, "g")
		if n == "b" {
			s.NetworkGroup = "other"
		}
		if err := h.withGroupLease(s, func() error { return h.Create(s) }); err != nil {
			t.Fatal(err)
		}
	}
	admit := h.AdmitGroupMember("g")
	hello := func(name, mac string) netgroup.Hello {
		secret, _ := os.ReadFile(filepath.Join(h.Dir(name).Path, FileSecret))
		return netgroup.Hello{Machine: name, MAC: mac, Proof: netgroup.ProofFor(secret, "g", mac)}
	}
	a, _ := h.Dir("a").Spec()
	b, _ := h.Dir("b").Spec()
	if err := admit(hello("a", a.GroupLease.MAC)); err != nil {
		t.Fatalf("a member was refused: %v", err)
	}
	if err := admit(hello("a", strings.ToUpper(a.GroupLease.MAC))); err != nil {
		t.Fatalf("a MAC in capitals was refused: %v", err)
	}
	for what, hl := range map[string]netgroup.Hello{
		"a machine of another group":   hello("b", b.GroupLease.MAC),
		"another MAC than the lease's": hello("a", "5a:94:ef:13:64:99"),
		"a wrong proof":                {Machine: "a", MAC: a.GroupLease.MAC, Proof: []byte("nope")},
		"no such machine":              {Machine: "zz", MAC: a.GroupLease.MAC},
		"a bad name":                   {Machine: "../a", MAC: a.GroupLease.MAC},
	} {
		if err := admit(hl); err == nil {
			t.Errorf("%s was admitted", what)
		}
	}
}
