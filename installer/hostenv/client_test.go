package hostenv

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/installer/hostenv/hostenvtest"
)

func TestPodmanConnection(t *testing.T) {
	ctx := context.Background()
	list := "podman system connection list --format json"
	podman := Target{Machine: "dev", Endpoint: "/h/dev/engine.sock", Engine: EnginePodman}
	for _, tc := range []struct {
		name   string
		target Target
		listed string
		want   []string
	}{
		{"docker machine", Target{Machine: "dev", Endpoint: "/x", Engine: EngineDocker}, `[]`, nil},
		{"new", podman, `[{"Name":"other","URI":"ssh://h","Default":true}]`,
			[]string{list, "podman system connection add skiff-dev unix:///h/dev/engine.sock"}},
		{"podman 4 lists nothing as empty", podman, ``,
			[]string{list, "podman system connection add skiff-dev unix:///h/dev/engine.sock"}},
		{"unchanged", podman, `[{"Name":"skiff-dev","URI":"unix:///h/dev/engine.sock","Default":false}]`,
			[]string{list}},
		{"moved, was the default", podman, `[{"Name":"skiff-dev","URI":"unix:///old.sock","Default":true}]`,
			[]string{list, "podman system connection rm skiff-dev", "podman system connection add --default skiff-dev unix:///h/dev/engine.sock"}},
	} {
		r := &hostenvtest.Runner{Output: map[string]string{list: tc.listed}}
		p := &PodmanConnection{Binary: "podman", Runner: r}
		if err := p.Add(ctx, tc.target); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !reflect.DeepEqual(r.Calls, tc.want) {
			t.Errorf("%s: ran %q, want %q", tc.name, r.Calls, tc.want)
		}
	}

	r := &hostenvtest.Runner{Output: map[string]string{list: `[{"Name":"skiff","URI":"unix:///s"}]`}}
	p := &PodmanConnection{Binary: "podman", Runner: r}
	if err := p.Remove(ctx, "dev"); err != nil || len(r.Calls) != 1 {
		t.Errorf("remove of an unlisted connection: %v %q", err, r.Calls)
	}
	if err := p.Remove(ctx, "default"); err != nil || r.Calls[len(r.Calls)-1] != "podman system connection rm skiff" {
		t.Errorf("remove: %v %q", err, r.Calls)
	}
	r = &hostenvtest.Runner{Output: map[string]string{list: `not json`}}
	if err := (&PodmanConnection{Binary: "podman", Runner: r}).Add(ctx, podman); err == nil {
		t.Error("an unreadable list was taken for an empty one")
	}
}

func TestAddAllAndEnv(t *testing.T) {
	ctx := context.Background()
	cfg := t.TempDir()
	t.Setenv("DOCKER_CONFIG", cfg)
	list := "podman system connection list --format json"
	r := &hostenvtest.Runner{Output: map[string]string{list: `[]`}, Fail: map[string]error{"podman system connection add": os.ErrPermission}}
	clients := []Client{DockerContext{}, &PodmanConnection{Binary: "podman", Runner: r}}
	tg := Target{Machine: "default", Endpoint: "/h/engine.sock", Engine: EnginePodman}
	err := AddAll(ctx, clients, tg)
	// The podman failure is reported, and the docker context is written anyway.
	if err == nil || !strings.Contains(err.Error(), "podman connection") || strings.Contains(err.Error(), "docker context") {
		t.Fatalf("AddAll: %v", err)
	}
	dir, _ := contextDir("skiff")
	if _, err := os.Stat(filepath.Join(dir, "meta.json")); err != nil {
		t.Fatal(err)
	}
	if err := RemoveAll(ctx, clients, "default"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("the docker context is still there: %v", err)
	}

	got, err := ShellLines(ShellPOSIX, EnvFor(clients, tg))
	if want := "export DOCKER_HOST=\"unix:///h/engine.sock\"\nexport CONTAINER_HOST=\"unix:///h/engine.sock\"\n"; err != nil || got != want {
		t.Errorf("podman machine env: %q %v", got, err)
	}
	tg.Engine = EngineDocker
	if got, _ := ShellLines(ShellFish, EnvFor(clients, tg)); got != "set -gx DOCKER_HOST \"unix:///h/engine.sock\";\n" {
		t.Errorf("docker machine env: %q", got)
	}
	for sh, want := range map[Shell]string{ShellPowerShell: `$Env:CONTAINER_HOST = "npipe:////./pipe/p"`, ShellCmd: "SET CONTAINER_HOST=npipe:////./pipe/p"} {
		got, _ := ShellLines(sh, (&PodmanConnection{}).Env(Target{Endpoint: `\\.\pipe\p`, Engine: EnginePodman}))
		if strings.TrimSpace(got) != want {
			t.Errorf("%s: %q", sh, got)
		}
	}
	if _, err := ShellLines("tcsh", nil); err == nil {
		t.Error("an unknown shell was accepted")
	}
}
