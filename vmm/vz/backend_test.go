package vz

import (
	"errors"
	"slices"
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

func TestCheckWarm(t *testing.T) {
	for _, tc := range []struct {
		arch, version string
		want          string // substring of the error; empty means supported
		unsupported   bool   // the error is vmm.ErrNotSupported
	}{
		{"arm64", "14.0", "", false},
		{"arm64", "15.3.1", "", false},
		{"arm64", "13.6.1", "needs macOS 14 or newer, this Mac runs 13.6.1", true},
		{"arm64", "12.7", "macOS 14", true},
		{"amd64", "14.4", "Apple silicon", true},
		{"arm64", "", "unrecognised macOS version", false},
		{"arm64", "Sonoma", "unrecognised", false},
	} {
		err := checkWarm(tc.arch, tc.version)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s %s: %v", tc.arch, tc.version, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s %s: got %v, want error containing %q", tc.arch, tc.version, err, tc.want)
		case err != nil && errors.Is(err, vmm.ErrNotSupported) != tc.unsupported:
			t.Errorf("%s %s: errors.Is(%v, ErrNotSupported) = %v", tc.arch, tc.version, err, !tc.unsupported)
		}
	}
}

func TestStateKey(t *testing.T) {
	base := vmm.Config{
		Name: "dev", Dir: "/m/dev", RunDir: "/r/dev", Arch: "arm64", CPUs: 2, MemoryMiB: 2048,
		Kernel: "/img/Image", Initrd: "/img/initrd", Cmdline: "console=hvc0",
		Disks:     []vmm.Disk{{Path: "/img/root", Serial: "skiff-root", ReadOnly: true}, {Path: "/m/dev/data", Serial: "skiff-data"}},
		Shares:    []vmm.Share{{Tag: "home", HostPath: "/Users/me"}},
		SerialLog: "/m/dev/serial.log", MAC: usernet.GuestMAC,
	}
	key := func(o Options, cfg vmm.Config, rosetta bool, version, build string) string {
		return stateKey(New(o).shape(cfg, rosetta), version, build)
	}
	want := key(Options{}, base, true, "14.2.1", "23C71")
	if !strings.HasPrefix(want, "vz-") || want != key(Options{}, base, true, "14.2.1", "23C71") {
		t.Fatalf("key %q is not stable or not named", want)
	}
	// What the VM's configuration is built from, and the macOS build, change the key.
	for name, k := range map[string]string{
		"cpus":        key(Options{}, with(base, func(c *vmm.Config) { c.CPUs = 4 }), true, "14.2.1", "23C71"),
		"memory":      key(Options{}, with(base, func(c *vmm.Config) { c.MemoryMiB = 4096 }), true, "14.2.1", "23C71"),
		"kernel":      key(Options{}, with(base, func(c *vmm.Config) { c.Kernel = "/img2/Image" }), true, "14.2.1", "23C71"),
		"initrd":      key(Options{}, with(base, func(c *vmm.Config) { c.Initrd = "/img2/initrd" }), true, "14.2.1", "23C71"),
		"cmdline":     key(Options{}, with(base, func(c *vmm.Config) { c.Cmdline += " quiet" }), true, "14.2.1", "23C71"),
		"disk path":   key(Options{}, with(base, func(c *vmm.Config) { c.Disks[1].Path = "/m/dev/data2" }), true, "14.2.1", "23C71"),
		"disk serial": key(Options{}, with(base, func(c *vmm.Config) { c.Disks[1].Serial = "x" }), true, "14.2.1", "23C71"),
		"disk ro":     key(Options{}, with(base, func(c *vmm.Config) { c.Disks[1].ReadOnly = true }), true, "14.2.1", "23C71"),
		"extra disk":  key(Options{}, with(base, func(c *vmm.Config) { c.Disks = append(c.Disks, vmm.Disk{Path: "/s", Serial: "skiff-seed"}) }), true, "14.2.1", "23C71"),
		"share":       key(Options{}, with(base, func(c *vmm.Config) { c.Shares[0].ReadOnly = true }), true, "14.2.1", "23C71"),
		"no share":    key(Options{}, with(base, func(c *vmm.Config) { c.Shares = nil }), true, "14.2.1", "23C71"),
		"mac":         key(Options{}, with(base, func(c *vmm.Config) { c.MAC = "5a:94:ef:e4:0c:ef" }), true, "14.2.1", "23C71"),
		"mtu":         key(Options{MTU: 1500}, base, true, "14.2.1", "23C71"),
		"rosetta off": key(Options{Rosetta: RosettaOff}, base, true, "14.2.1", "23C71"),
		"no rosetta":  key(Options{}, base, false, "14.2.1", "23C71"),
		"os version":  key(Options{}, base, true, "14.3", "23C71"),
		"os build":    key(Options{}, base, true, "14.2.1", "23C64"),
	} {
		if k == want {
			t.Errorf("changing the %s does not change the key", name)
		}
	}
	// Where the machine's files and logs live does not shape the VM.
	same := with(base, func(c *vmm.Config) { c.Name, c.Dir, c.RunDir, c.SerialLog = "other", "/x", "/y", "/x/serial.log" })
	if key(Options{}, same, true, "14.2.1", "23C71") != want {
		t.Error("the machine's name or directories change the key")
	}
	// Rosetta is attached only to arm64 guests: an amd64 guest's key ignores the host's Rosetta.
	amd := with(base, func(c *vmm.Config) { c.Arch = "amd64" })
	if key(Options{}, amd, true, "14.2.1", "23C71") != key(Options{}, amd, false, "14.2.1", "23C71") {
		t.Error("Rosetta availability changes the key of an amd64 guest")
	}
}

// with returns a deep enough copy of cfg changed by f.
func with(cfg vmm.Config, f func(*vmm.Config)) vmm.Config {
	cfg.Disks = slices.Clone(cfg.Disks)
	cfg.Shares = slices.Clone(cfg.Shares)
	f(&cfg)
	return cfg
}
