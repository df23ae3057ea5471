package e2e

import (
	"os"
	"testing"

	"github.com/skiff-dev/skiff/gui/fake"
	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/machine/agentapi"
)

// fakeHome lays out a Skiff home whose machine "e2e" looks running to the real
// HomeSource: config written, agent lock held, and a fake agent and engine on the
// machine's own socket paths.
func fakeHome(t *testing.T) (machine.Home, string) {
	t.Helper()
	root, err := fake.ShortTempDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	home := machine.Home{Root: root}
	spec := &machine.Spec{SchemaVersion: machine.SchemaVersion, Name: "e2e", CPUs: 2, MemoryMiB: 2048, DiskGiB: 20, Engine: machine.EngineDocker}
	d := home.Dir(spec.Name)
	if err := os.MkdirAll(d.Path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := d.EnsureRun(); err != nil {
		t.Fatal(err)
	}
	if err := spec.Save(d.File(machine.FileConfig)); err != nil {
		t.Fatal(err)
	}
	lock, err := machine.TryLock(d.File(machine.FileAgentLock))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Unlock() })
	a, err := fake.NewAgent(d.Run, machine.SockControl, agentapi.State{Name: spec.Name, Phase: agentapi.PhaseRunning, Backend: "fake"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	e, err := fake.NewEngine(d.Run, machine.SockEngine)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return home, spec.Name
}
