package model_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/gui/engine"
	"github.com/skiff-dev/skiff/gui/fake"
	"github.com/skiff-dev/skiff/gui/model"
	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/machine/agentapi"
)

type world struct {
	src     *fake.Source
	starter *fake.Starter
	m       *model.Model
	cancel  context.CancelFunc
}

func newWorld(t *testing.T) *world {
	t.Helper()
	dir, err := fake.ShortTempDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	src := fake.NewSource(dir)
	t.Cleanup(src.Close)
	w := &world{src: src, starter: &fake.Starter{Src: src}}
	w.m = model.New(src, w.starter, model.Options{Poll: 50 * time.Millisecond, Refresh: time.Hour})
	return w
}

func (w *world) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	t.Cleanup(cancel)
	go w.m.Run(ctx)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func names(cs []engine.Container) []string {
	var n []string
	for _, c := range cs {
		n = append(n, c.Name())
	}
	return n
}

func TestModelFollowsAgentAndEngineEvents(t *testing.T) {
	w := newWorld(t)
	dm, err := w.src.Add(machine.Spec{Name: "default", CPUs: 2, MemoryMiB: 2048, DiskGiB: 20}, agentapi.PhaseRunning)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.src.Add(machine.Spec{Name: "other"}, ""); err != nil {
		t.Fatal(err)
	}
	dm.Engine.AddContainer(engine.Container{ID: "a1", Names: []string{"/alpha"}, State: "running"})
	w.run(t)

	eventually(t, "default selected and running with its container", func() bool {
		s := w.m.Snapshot()
		mc, _ := s.Machine("default")
		return s.Selected == "default" && mc.State == machine.StateRunning && slices.Equal(names(s.Containers), []string{"alpha"})
	})
	eventually(t, "engine version and disk use", func() bool {
		mc, _ := w.m.Snapshot().Machine("default")
		return mc.Engine == "28.5.2" && mc.DiskBytes == 20<<30 && mc.CPUs == 2
	})
	if ind := w.m.Snapshot().Indicator(); ind != model.IndicatorRunning {
		t.Fatalf("indicator %v, want running", ind)
	}
	eventually(t, "engine event stream open", func() bool { return dm.Engine.Subscribers() > 0 })

	// A container created behind the dashboard's back shows through the event stream.
	dm.Engine.AddContainer(engine.Container{ID: "b2", Names: []string{"/beta"}, State: "running"})
	eventually(t, "beta listed", func() bool { return slices.Equal(names(w.m.Snapshot().Containers), []string{"alpha", "beta"}) })

	// Forwards arrive as agent events.
	dm.Agent.SetForwards([]agentapi.Forward{{Proto: "tcp", HostAddr: "127.0.0.1:8080"}})
	eventually(t, "forwards", func() bool {
		mc, _ := w.m.Snapshot().Machine("default")
		return len(mc.Forwards) == 1 && mc.Forwards[0].HostAddr == "127.0.0.1:8080"
	})

	// A crash reads as crashed and turns the tray red.
	w.src.SetCrashed("other", true)
	eventually(t, "crashed indicator", func() bool { return w.m.Snapshot().Indicator() == model.IndicatorCrashed })
}

func TestModelActionsHitTheRightEndpoints(t *testing.T) {
	w := newWorld(t)
	dm, err := w.src.Add(machine.Spec{Name: "default"}, agentapi.PhaseRunning)
	if err != nil {
		t.Fatal(err)
	}
	dm.Engine.AddContainer(engine.Container{ID: "a1", Names: []string{"/alpha"}, State: "running"})
	dm.Engine.AddImage(engine.Image{ID: "sha256:feed", RepoTags: []string{"busybox:latest"}})
	w.run(t)
	ctx := context.Background()
	eventually(t, "containers", func() bool { return len(w.m.Snapshot().Containers) == 1 })

	for _, tc := range []struct {
		do   func() error
		want string
	}{
		{func() error { return w.m.ContainerDo(ctx, "a1", engine.ActionStop) }, "POST /containers/a1/stop"},
		{func() error { return w.m.ContainerDo(ctx, "a1", engine.ActionStart) }, "POST /containers/a1/start"},
		{func() error { return w.m.ContainerDo(ctx, "a1", engine.ActionRestart) }, "POST /containers/a1/restart"},
		{func() error { return w.m.ContainerDo(ctx, "a1", engine.ActionRemove) }, "DELETE /containers/a1"},
		{func() error { return w.m.RemoveImage(ctx, "sha256:feed") }, "DELETE /images/sha256:feed"},
	} {
		dm.Engine.Reset()
		if err := tc.do(); err != nil {
			t.Fatalf("%s: %v", tc.want, err)
		}
		if !dm.Engine.Has(tc.want) {
			t.Fatalf("engine got %q, want %q", dm.Engine.Requests(), tc.want)
		}
	}
	eventually(t, "removed container gone", func() bool { return len(w.m.Snapshot().Containers) == 0 })

	// Engine errors land in the status message.
	dm.Engine.FailOn("POST /containers/zz/start", "boom from the engine")
	if err := w.m.ContainerDo(ctx, "zz", engine.ActionStart); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("want the engine's error, got %v", err)
	}
	if msg := w.m.Snapshot().Message; !msg.Error || !strings.Contains(msg.Text, "boom from the engine") {
		t.Fatalf("status message %+v", msg)
	}

	// Stop goes to the agent; start goes to the CLI starter.
	if err := w.m.StopMachine(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	if !dm.Agent.Has("POST /v1/stop") {
		t.Fatalf("agent got %q", dm.Agent.Requests())
	}
	eventually(t, "stopped", func() bool {
		mc, _ := w.m.Snapshot().Machine("default")
		return mc.State == machine.StateStopped && len(w.m.Snapshot().Containers) == 0
	})
	if err := w.m.StartMachine(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	if got := w.starter.Calls(); !slices.Equal(got, []string{"default"}) {
		t.Fatalf("starter calls %q", got)
	}
	eventually(t, "running again", func() bool {
		mc, _ := w.m.Snapshot().Machine("default")
		return mc.State == machine.StateRunning
	})
	w.starter.Err = errors.New("serial log: kernel panic")
	if err := w.m.StartMachine(ctx, "default"); err == nil {
		t.Fatal("want the starter's error")
	}
	if msg := w.m.Snapshot().Message; !strings.Contains(msg.Text, "kernel panic") {
		t.Fatalf("status message %+v", msg)
	}
}

func TestModelFollowsLogs(t *testing.T) {
	w := newWorld(t)
	dm, err := w.src.Add(machine.Spec{Name: "default"}, agentapi.PhaseRunning)
	if err != nil {
		t.Fatal(err)
	}
	dm.Engine.AddContainer(engine.Container{ID: "a1", Names: []string{"/alpha"}, State: "running"})
	dm.Engine.Log("a1", "stdout", "first")
	dm.Engine.Log("a1", "stderr", "second")
	w.run(t)
	eventually(t, "running", func() bool { return len(w.m.Snapshot().Containers) == 1 })
	w.m.FollowLogs("a1")
	eventually(t, "past lines", func() bool { _, l := w.m.Logs(); return len(l) == 2 })
	dm.Engine.Log("a1", "stdout", "live")
	eventually(t, "followed line", func() bool {
		id, l := w.m.Logs()
		return id == "a1" && len(l) == 3 && l[2].Text == "live" && l[1].Stream == "stderr"
	})
	if !dm.Engine.Has("GET /containers/a1/logs") {
		t.Fatalf("engine got %q", dm.Engine.Requests())
	}
}

func TestEnvLinePointsAtTheEngineSocket(t *testing.T) {
	w := newWorld(t)
	dm, err := w.src.Add(machine.Spec{Name: "default"}, "")
	if err != nil {
		t.Fatal(err)
	}
	line, err := w.m.EnvLine("default")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(line, "DOCKER_HOST") || !strings.Contains(line, dm.Engine.Socket) {
		t.Fatalf("env line %q does not point at %s", line, dm.Engine.Socket)
	}
}
