package vz

import (
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/forward/usernet"
	"github.com/skiff-dev/skiff/vmm"
)

func TestNameAndShareType(t *testing.T) {
	b := New(Options{})
	if b.Name() != "vz" {
		t.Fatalf("Name() = %q", b.Name())
	}
	if got := vmm.ShareTypeOf(b); got != "virtiofs" {
		t.Fatalf("ShareTypeOf = %q, want virtiofs", got)
	}
}

func TestDefaultMTUMatchesUsernet(t *testing.T) {
	if DefaultMTU != usernet.MTU {
		t.Fatalf("DefaultMTU %d != usernet.MTU %d: the NIC would drop the guest's large frames", DefaultMTU, usernet.MTU)
	}
	if New(Options{}).mtu() != DefaultMTU || New(Options{MTU: 1500}).mtu() != 1500 {
		t.Fatal("MTU option not applied")
	}
}

func TestCheckResources(t *testing.T) {
	l := limits{MinCPUs: 1, MaxCPUs: 8, MinMemory: 128 << 20, MaxMemory: 16 << 30}
	for _, tc := range []struct {
		cpus int
		mem  int64
		want string // substring of the error; empty means valid
	}{
		{2, 2048, ""},
		{8, 16384, ""},
		{1, 128, ""},
		{0, 2048, "0 CPUs requested; this Mac allows 1 to 8"},
		{9, 2048, "9 CPUs"},
		{2, 64, "64 MiB of memory requested; this Mac allows 128 to 16384 MiB"},
		{2, 16385, "16385 MiB"},
		{2, 0, "0 MiB"},
	} {
		err := checkResources(tc.cpus, tc.mem, l)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%d CPUs %d MiB: %v", tc.cpus, tc.mem, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%d CPUs %d MiB: got %v, want error containing %q", tc.cpus, tc.mem, err, tc.want)
		case tc.want != "" && !strings.Contains(err.Error(), "skiff machine set"):
			t.Errorf("error does not say how to fix it: %v", err)
		}
	}
}

func TestParseMAC(t *testing.T) {
	if _, err := parseMAC(usernet.GuestMAC); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "5a:94:ef", "00:00:00:00:fe:80:00:00:00:00:00:00:00:00:00:00:00:00:00:00"} {
		if _, err := parseMAC(bad); err == nil {
			t.Errorf("parseMAC(%q) accepted", bad)
		}
	}
}
