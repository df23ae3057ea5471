package hostagent

import (
	"context"
	"errors"
	"log"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/images"
	"github.com/skiff-dev/skiff/installer/hostenv"
	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/machine/agentapi"
	"github.com/skiff-dev/skiff/vmm"
)

// envAgent makes the test binary a host agent: machine.Manager starts it as the agent of
// the machine named last on its command line, with the fake backend. So the lifecycle
// runs as it does for users: a detached agent process, its event stream, its exit.
const envAgent = "SKIFF_TEST_HOSTAGENT"

func TestMain(m *testing.M) {
	if os.Getenv(envAgent) != "" {
		os.Exit(runTestAgent(os.Args[len(os.Args)-1]))
	}
	os.Exit(m.Run())
}

func runTestAgent(name string) int {
	logger := log.New(os.Stderr, "", log.Lmicroseconds)
	h, err := machine.DefaultHome()
	if err != nil {
		logger.Print(err)
		return 1
	}
	d := h.Dir(name)
	spec, err := d.Spec()
	if err != nil {
		logger.Print(err)
		return 1
	}
	dir, err := os.MkdirTemp("", "skha")
	if err != nil {
		logger.Print(err)
		return 1
	}
	defer os.RemoveAll(dir)
	b, err := testBackends(spec.Backend)
	if err != nil {
		logger.Print(err)
		return 1
	}
	fb := b.(*fakeBackend)
	fb.dir, fb.logf = dir, logger.Printf
	a := &Agent{Dir: d, Spec: spec, Backend: fb, Log: logger}
	if err := a.Run(context.Background()); err != nil {
		logger.Printf("agent exiting: %v", err)
		return 1
	}
	return 0
}

// testBackends is the registry the lifecycle tests give machine.Manager.
func testBackends(name string) (vmm.Backend, error) {
	switch name {
	case "fake":
		return &fakeBackend{}, nil
	case "fake-broken":
		return &fakeBackend{StartErr: errors.New("the hypervisor refused")}, nil
	}
	return nil, &machine.Error{Class: machine.ErrInvalid, Detail: "no backend " + name}
}

func testManager(t *testing.T) *machine.Manager {
	t.Setenv(envAgent, "1")
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	return &machine.Manager{Home: machine.Home{Root: t.TempDir()}, Backend: testBackends, Agent: []string{os.Args[0]}}
}

func testSpec(t *testing.T, name, backend string) *machine.Spec {
	return &machine.Spec{SchemaVersion: 1, Name: name, Backend: backend, CPUs: 1, MemoryMiB: 512, DiskGiB: 2, Engine: machine.EngineDocker}
}

// TestManagerLifecycle drives one machine through init, start, stop, set and rm as the
// CLI and the tray do, each refusal checked by its class.
func TestManagerLifecycle(t *testing.T) {
	m := testManager(t)
	ctx := context.Background()
	img := t.TempDir()
	fakeImage(t, img)

	if _, err := m.Start(ctx, "dev", machine.StartOptions{}); !errors.Is(err, machine.ErrNotFound) {
		t.Fatalf("start before init: %v, want ErrNotFound", err)
	}
	if _, err := m.Init(ctx, testSpec(t, "dev", "fake"), machine.InitOptions{Image: img}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Init(ctx, testSpec(t, "dev", "fake"), machine.InitOptions{Image: img}); !errors.Is(err, machine.ErrExists) {
		t.Fatalf("init twice: %v, want ErrExists", err)
	}
	if _, err := m.Init(ctx, testSpec(t, "bad", "nonsense"), machine.InitOptions{Image: img}); !errors.Is(err, machine.ErrInvalid) {
		t.Fatalf("init with an unknown backend: %v, want ErrInvalid", err)
	}
	kube := testSpec(t, "kube", "fake")
	kube.Kubernetes, kube.MemoryMiB = true, machine.KubernetesMinMemoryMiB
	if _, err := m.Init(ctx, kube, machine.InitOptions{Image: img}); !errors.Is(err, machine.ErrInvalid) || !strings.Contains(err.Error(), "no Kubernetes layer") {
		t.Fatalf("init --kubernetes from an image without the layer: %v, want ErrInvalid", err)
	} else if m.Home.Dir("kube").Exists() {
		t.Fatal("a refused init left the machine's folder")
	}
	// The user's own current context is kept by a plain start.
	if err := hostenv.CreateContext("theirs", "/nonexistent.sock"); err != nil {
		t.Fatal(err)
	}
	if err := hostenv.UseContext("skiff-theirs"); err != nil {
		t.Fatal(err)
	}
	var phases []agentapi.Phase
	res, err := m.Start(ctx, "dev", machine.StartOptions{Progress: func(p machine.Phase) { phases = append(phases, p.Phase) }})
	if err != nil {
		t.Fatal(err)
	}
	if res.State == nil || res.State.Phase != agentapi.PhaseRunning || res.ContextErr != nil || res.Context != "skiff-dev" {
		t.Fatalf("start: %+v", res)
	}
	if !res.Switch.Kept || res.Switch.Switched {
		t.Fatalf("a plain start replaced the context the user chose: %+v", res.Switch)
	}
	if len(phases) == 0 || phases[len(phases)-1] != agentapi.PhaseRunning {
		t.Fatalf("phases heard: %v", phases)
	}
	if _, err := os.Stat(filepath.Join(os.Getenv("DOCKER_CONFIG"), "contexts", "meta")); err != nil {
		t.Fatalf("no docker context was written: %v", err)
	}
	if res, err := m.Start(ctx, "dev", machine.StartOptions{}); err != nil || !res.AlreadyRunning || res.Switch.Switched {
		t.Fatalf("start of a running machine: %+v %v", res, err)
	}
	// Asked, even a start of a running machine switches, and the stop puts it back.
	if res, err := m.Start(ctx, "dev", machine.StartOptions{SwitchContext: true}); err != nil || !res.Switch.Switched || res.Switch.Previous != "skiff-theirs" {
		t.Fatalf("start --switch-context: %+v %v", res, err)
	}
	if cur, _ := hostenv.CurrentContext(); cur != "skiff-dev" {
		t.Fatalf("current context %q after the switch", cur)
	}
	cpus := 2
	if _, err := m.Set(ctx, "dev", machine.Changes{CPUs: &cpus}); !errors.Is(err, machine.ErrState) {
		t.Fatalf("set while running: %v, want ErrState", err)
	}
	if err := m.Remove(ctx, "dev", machine.RmOptions{}); !errors.Is(err, machine.ErrState) {
		t.Fatalf("rm while running: %v, want ErrState", err)
	}
	v, err := m.Inspect(ctx, "dev")
	if err != nil || v.Status.State != machine.StateRunning || v.Status.Agent == nil {
		t.Fatalf("inspect: %+v %v", v, err)
	}
	if sr, err := m.Stop(ctx, "dev", agentapi.StopRequest{Cold: true}); err != nil || sr.AlreadyStopped || sr.RestoredContext != "skiff-theirs" {
		t.Fatalf("stop: %+v %v", sr, err)
	}
	if cur, _ := hostenv.CurrentContext(); cur != "skiff-theirs" {
		t.Fatalf("current context %q after stop, want the user's skiff-theirs back", cur)
	}
	if sr, err := m.Stop(ctx, "dev", agentapi.StopRequest{}); err != nil || !sr.AlreadyStopped {
		t.Fatalf("stop again: %+v %v", sr, err)
	}
	off := false
	if sr, err := m.Set(ctx, "dev", machine.Changes{CPUs: &cpus, HostLoopback: &off, FileEvents: &off}); err != nil || sr.Spec.CPUs != 2 || !sr.Spec.NoHostLoopback || !sr.Spec.NoFileEvents {
		t.Fatalf("set: %+v %v", sr, err)
	}
	if _, err := m.Start(ctx, "dev", machine.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(ctx, "dev", machine.RmOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Inspect(ctx, "dev"); !errors.Is(err, machine.ErrNotFound) {
		t.Fatalf("inspect after rm: %v, want ErrNotFound", err)
	}
	if views, err := m.List(ctx); err != nil || len(views) != 0 {
		t.Fatalf("list after rm: %v %v", views, err)
	}
}

// TestManagerStartFailure: an agent that cannot boot its VM ends the start with its
// reason and the end of its log, and the machine reads as crashed until stopped.
func TestManagerStartFailure(t *testing.T) {
	m := testManager(t)
	ctx := context.Background()
	img := t.TempDir()
	fakeImage(t, img)
	if _, err := m.Init(ctx, testSpec(t, "dev", "fake-broken"), machine.InitOptions{Image: img}); err != nil {
		t.Fatal(err)
	}
	_, err := m.Start(ctx, "dev", machine.StartOptions{})
	var se *machine.StartError
	if !errors.As(err, &se) || !strings.Contains(se.Log, "the hypervisor refused") {
		t.Fatalf("start: %v", err)
	}
	if v, _ := m.Inspect(ctx, "dev"); v.Status.State != machine.StateCrashed {
		t.Fatalf("after a failed start: %+v", v.Status)
	}
	if sr, err := m.Stop(ctx, "dev", agentapi.StopRequest{}); err != nil || !sr.Recovered {
		t.Fatalf("stop of a crashed machine: %+v %v", sr, err)
	}
}

// TestManagerImageChanged: a cached image changed after install (by anything: the cache
// is every machine's) is caught before the VM uses it: installed again from its source
// when that is there, else the start fails naming the file.
func TestManagerImageChanged(t *testing.T) {
	m := testManager(t)
	ctx := context.Background()
	src := t.TempDir()
	fakeImage(t, src)
	if _, err := m.Init(ctx, testSpec(t, "dev", "fake"), machine.InitOptions{Image: src}); err != nil {
		t.Fatal(err)
	}
	_, spec, err := m.Machine("dev")
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(spec.Image.Dir, "root.img")
	plant := func() {
		t.Helper()
		os.Chmod(root, 0o644)
		if err := os.WriteFile(root, []byte("planted root"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	plant()
	res, err := m.Start(ctx, "dev", machine.StartOptions{})
	if err != nil {
		t.Fatalf("start with a changed image and its source at hand: %v", err)
	}
	if w := strings.Join(res.State.Warnings, "\n"); !strings.Contains(w, "root.img") || !strings.Contains(w, "installing it again") {
		t.Fatalf("no warning about the changed image: %q", w)
	}
	if b, _ := os.ReadFile(root); string(b) != "fake "+images.RoleRoot {
		t.Fatalf("the root was not installed again: %q", b)
	}
	if _, err := m.Stop(ctx, "dev", agentapi.StopRequest{Cold: true}); err != nil {
		t.Fatal(err)
	}
	// Without its source the start fails, and says which file.
	os.RemoveAll(src)
	plant()
	_, err = m.Start(ctx, "dev", machine.StartOptions{})
	var se *machine.StartError
	if !errors.As(err, &se) || !strings.Contains(se.Log, "root.img") {
		t.Fatalf("start with a changed image and no source: %v", err)
	}
}
