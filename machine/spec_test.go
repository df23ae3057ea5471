package machine

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestSpecRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.json")
	in := &Spec{Name: "x", Backend: "qemu", CPUs: 2, MemoryMiB: 2048, DiskGiB: 10, Engine: EnginePodman,
		Mounts: []Mount{{HostPath: "/h", GuestPath: "/g", ReadOnly: true}}, ShareType: "9p-transport"}
	if err := in.Save(p); err != nil {
		t.Fatal(err)
	}
	out, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip changed the spec:\n%+v\n%+v", in, out)
	}
}

func TestValidate(t *testing.T) {
	ok := Spec{Name: "ok", CPUs: 1, MemoryMiB: 512, DiskGiB: 8, Engine: EngineDocker}
	lim := Limits{HostCPUs: 4, HostMemoryMiB: 8192}
	if err := ok.Validate(lim); err != nil {
		t.Fatal(err)
	}
	kube := ok
	kube.Kubernetes, kube.MemoryMiB = true, KubernetesMinMemoryMiB
	if err := kube.Validate(lim); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Spec){
		"invalid machine name":        func(s *Spec) { s.Name = "Bad!" },
		"at least 1 CPU":              func(s *Spec) { s.CPUs = 0 },
		"this host has 4 CPUs":        func(s *Spec) { s.CPUs = 5 },
		"this host has only":          func(s *Spec) { s.MemoryMiB = 9000 },
		"--disk-size":                 func(s *Spec) { s.DiskGiB = 1 },
		"--engine":                    func(s *Spec) { s.Engine = "lxc" },
		"--share-type":                func(s *Spec) { s.ShareType = "nfs" },
		"used twice":                  func(s *Spec) { s.Mounts = []Mount{{"/a", "/g", false}, {"/b", "/g", false}} },
		"podman is not supported yet": func(s *Spec) { s.Kubernetes, s.Engine, s.MemoryMiB = true, EnginePodman, 4096 },
		"Kubernetes needs at least":   func(s *Spec) { s.Kubernetes = true },
	} {
		s := ok
		mut(&s)
		if err := s.Validate(lim); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: got %v", name, err)
		}
	}
}

func TestParseMountAndSize(t *testing.T) {
	for in, want := range map[string]Mount{
		"/src":              {HostPath: "/src", GuestPath: "/src"},
		"/src:/dst":         {HostPath: "/src", GuestPath: "/dst"},
		"/src:/dst:ro":      {HostPath: "/src", GuestPath: "/dst", ReadOnly: true},
		"/src:ro":           {HostPath: "/src", GuestPath: "/src", ReadOnly: true},
		`C:\Users\me`:       {HostPath: `C:\Users\me`, GuestPath: "/mnt/c/Users/me"},
		`C:\Users\me:/w:ro`: {HostPath: `C:\Users\me`, GuestPath: "/w", ReadOnly: true},
	} {
		got, err := ParseMount(in)
		if err != nil || got != want {
			t.Errorf("ParseMount(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for in, want := range map[string]int64{"512": 512, "4G": 4096, "2GiB": 2048, "1T": 1 << 20, "64g": 65536} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "abc", "-1G", "4X"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
}
