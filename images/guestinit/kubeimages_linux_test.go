package guestinit

import (
	"slices"
	"testing"
)

func TestPlanImageSync(t *testing.T) {
	engine := map[string]string{"app:1": "sha256:a", "app:2": "sha256:b", "tools:latest": "sha256:c"}
	synced := map[string]string{"app:1": "sha256:a", "app:2": "sha256:old", "gone:1": "sha256:d"}
	p := planImageSync(engine, synced)
	if want := []string{"app:2", "tools:latest"}; !slices.Equal(p.importRefs, want) {
		t.Errorf("import %v, want %v", p.importRefs, want)
	}
	if want := []string{"gone:1"}; !slices.Equal(p.removeRefs, want) {
		t.Errorf("remove %v, want %v", p.removeRefs, want)
	}
	if p := planImageSync(engine, engine); len(p.importRefs)+len(p.removeRefs) != 0 {
		t.Errorf("in sync, yet the plan is %+v", p)
	}
}

func TestContainerdRef(t *testing.T) {
	for in, want := range map[string]string{
		"app:1":                     "docker.io/library/app:1",
		"me/app:1":                  "docker.io/me/app:1",
		"localhost/app:1":           "localhost/app:1",
		"registry.example:5000/a:1": "registry.example:5000/a:1",
		"ghcr.io/o/a:2":             "ghcr.io/o/a:2",
		"docker.io/app:3":           "docker.io/library/app:3",
	} {
		if got := containerdRef(in); got != want {
			t.Errorf("containerdRef(%q) = %q, want %q", in, got, want)
		}
	}
}
