package hyperv

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/vmm"
)

const (
	scriptInfo    = `$vm = Get-VM -Name 'skiff-dev' -ErrorAction SilentlyContinue; if ($vm) { '{0} {1}' -f $vm.Id.Guid, $vm.State }`
	scriptVersion = `$v = (Get-Item "$env:SystemRoot\System32\vmms.exe").VersionInfo; '{0}.{1}.{2}.{3}' -f $v.FileMajorPart, $v.FileMinorPart, $v.FileBuildPart, $v.FilePrivatePart`
)

// since returns the scripts run after the first n, without Wait's state polls.
func (s *hvSim) since(n int) []string {
	return slices.DeleteFunc(s.Scripts()[n:], func(s string) bool { return reState.MatchString(s) })
}

func (s *hvSim) vmState(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if vm := s.vms[name]; vm != nil {
		return vm.state
	}
	return ""
}

func wantScripts(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("scripts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func waitDone(t *testing.T, vm vmm.VM) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := vm.Wait(ctx); err != nil {
		t.Fatalf("Wait after Suspend: %v", err)
	}
}

// Running -> Saved -> Running -> Saved -> discard -> Off, with the exact cmdlets.
func TestWarmStartScripts(t *testing.T) {
	s := newSim(t)
	b := testBackend(s)
	cfg := testConfig(t)
	ctx := context.Background()
	vm, err := b.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	key, err := b.StateKey(ctx, cfg)
	if err != nil || !strings.HasPrefix(key, "hyperv-") {
		t.Fatalf("StateKey = %q, %v", key, err)
	}

	state := t.TempDir()
	n := len(s.Scripts())
	if err := b.Suspend(ctx, vm, state); err != nil {
		t.Fatal(err)
	}
	wantScripts(t, s.since(n), `Save-VM -Name 'skiff-dev'`)
	if st := s.vmState("skiff-dev"); st != "Saved" {
		t.Fatalf("VM is %s after Suspend, want Saved", st)
	}
	waitDone(t, vm)
	var marker savedVM
	if b, err := os.ReadFile(filepath.Join(state, savedMarker)); err != nil || json.Unmarshal(b, &marker) != nil {
		t.Fatalf("no marker in the state directory: %v", err)
	}
	if marker != (savedVM{VM: "skiff-dev", ID: vmGUID}) {
		t.Fatalf("marker %+v does not name the VM", marker)
	}

	n = len(s.Scripts())
	vm2, err := b.Restore(ctx, cfg, state)
	if err != nil {
		t.Fatal(err)
	}
	wantScripts(t, s.since(n), scriptInfo, `Start-VM -Name 'skiff-dev'`)
	if st := s.vmState("skiff-dev"); st != "Running" {
		t.Fatalf("VM is %s after Restore, want Running", st)
	}
	if boot, err := guestBoot(ctx, vm2); err != nil || boot != "boot 1" {
		t.Fatalf("restored guest says %q, %v; want the first boot resumed", boot, err)
	}
	if k, _ := b.StateKey(ctx, cfg); k != key {
		t.Fatal("StateKey changed across a suspend and restore")
	}

	// Save again, then the host agent decides to boot cold.
	if err := b.Suspend(ctx, vm2, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	waitDone(t, vm2)
	n = len(s.Scripts())
	if err := b.DiscardState(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	wantScripts(t, s.since(n), scriptInfo, `Remove-VMSavedState -VMName 'skiff-dev' -Confirm:$false`)
	if st := s.vmState("skiff-dev"); st != "Off" {
		t.Fatalf("VM is %s after DiscardState, want Off", st)
	}
	// Nothing saved: one Get-VM and no change.
	n = len(s.Scripts())
	if err := b.DiscardState(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	wantScripts(t, s.since(n), scriptInfo)
	// An Off VM has no state to resume: Restore refuses without starting it.
	n = len(s.Scripts())
	_, err = b.Restore(ctx, cfg, state)
	wantErr(t, err, nil, "skiff-dev is Off, not Saved")
	wantScripts(t, s.since(n), scriptInfo)
	if st := s.vmState("skiff-dev"); st != "Off" {
		t.Fatalf("a refused Restore left the VM %s", st)
	}
	vm3, err := b.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer vm3.Kill(ctx)
	if boot, _ := guestBoot(ctx, vm3); boot != "boot 2" {
		t.Fatalf("Start after the discard: guest says %q, want a second boot", boot)
	}
}

func TestRestoreOnlyTheSavedVM(t *testing.T) {
	s := newSim(t)
	b := testBackend(s)
	cfg := testConfig(t)
	ctx := context.Background()
	vm, err := b.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	if err := b.Suspend(ctx, vm, state); err != nil {
		t.Fatal(err)
	}
	waitDone(t, vm)
	writeMarker := func(m savedVM) {
		b, _ := json.Marshal(m)
		os.WriteFile(filepath.Join(state, savedMarker), b, 0o600)
	}

	_, err = b.Restore(ctx, cfg, t.TempDir())
	wantErr(t, err, os.ErrNotExist, "saved state")

	writeMarker(savedVM{VM: "skiff-other", ID: vmGUID})
	_, err = b.Restore(ctx, cfg, state)
	wantErr(t, err, nil, "belongs to VM skiff-other, not skiff-dev")

	// Same name, another VM: it was removed and created again since the save.
	writeMarker(savedVM{VM: "skiff-dev", ID: simID(7)})
	_, err = b.Restore(ctx, cfg, state)
	wantErr(t, err, nil, "not the VM that was saved")

	// A Saved VM with this name that this machine did not create is left alone.
	writeMarker(savedVM{VM: "skiff-dev", ID: vmGUID})
	other := cfg
	other.Dir = t.TempDir()
	_, err = b.Restore(ctx, other, state)
	wantErr(t, err, nil, "not the VM that was saved")
	if err := b.DiscardState(ctx, other); err != nil {
		t.Fatal(err)
	}
	if st := s.vmState("skiff-dev"); st != "Saved" {
		t.Fatalf("DiscardState for another machine left the VM %s", st)
	}

	if got := slices.DeleteFunc(s.Scripts(), func(sc string) bool { return !strings.HasPrefix(sc, "Start-VM") }); len(got) != 1 {
		t.Fatalf("a refused Restore started the VM: %q", got)
	}
	vm2, err := b.Restore(ctx, cfg, state)
	if err != nil {
		t.Fatal(err)
	}
	vm2.Kill(ctx)
}

// A failed Save-VM leaves the VM running, its Wait blocking and no marker.
func TestSuspendFailureKeepsRunning(t *testing.T) {
	s := newSim(t)
	b := testBackend(s)
	cfg := testConfig(t)
	ctx := context.Background()
	vm, err := b.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Kill(ctx)
	s.mu.Lock() // Wait's polls run
	s.fail["Save-VM"] = outBadState("Save-VM", "skiff-dev")
	s.mu.Unlock()
	state := t.TempDir()
	err = b.Suspend(ctx, vm, state)
	wantErr(t, err, nil, "save VM skiff-dev", "failed to change state")
	if entries, _ := os.ReadDir(state); len(entries) != 0 {
		t.Fatalf("a failed Suspend left %v in the state directory", entries)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := vm.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait after a failed Suspend returned %v; the VM runs on", err)
	}
	if boot, err := guestBoot(ctx, vm); err != nil || boot != "boot 1" {
		t.Fatalf("guest after a failed Suspend: %q, %v", boot, err)
	}
}

func TestStateKeyHyperV(t *testing.T) {
	s := newSim(t)
	b := testBackend(s)
	cfg := testConfig(t)
	ctx := context.Background()
	key := func(c vmm.Config) string {
		t.Helper()
		k, err := b.StateKey(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	want := key(cfg)
	wantScripts(t, s.Scripts(), scriptVersion)
	if key(cfg) != want {
		t.Fatal("StateKey is not stable")
	}
	changes := map[string]vmm.Config{}
	c := cfg
	c.CPUs = 4
	changes["cpus"] = c
	c = cfg
	c.MemoryMiB = 4096
	changes["memory"] = c
	c = cfg
	c.Name = "other"
	changes["name"] = c
	c = cfg
	c.Disks = append(slices.Clone(cfg.Disks), vmm.Disk{Path: "/x/seed.img", Serial: "skiff-seed"})
	changes["disks"] = c
	c = cfg
	c.Dir = t.TempDir()
	changes["VHDX directory"] = c
	for what, c := range changes {
		if key(c) == want {
			t.Errorf("changing the %s does not change the key", what)
		}
	}
	s.version = "10.0.26100.1"
	if key(cfg) == want {
		t.Error("a Hyper-V update does not change the key")
	}
	s.fail[`$v = (Get-Item`] = "Get-Item : Cannot find path 'C:\\WINDOWS\\System32\\vmms.exe' because it does not exist.\n"
	_, err := b.StateKey(ctx, cfg)
	wantErr(t, err, ErrHyperVMissing, "Enable-WindowsOptionalFeature")
}

func TestDiscardStateWithoutVM(t *testing.T) {
	s := newSim(t)
	if err := testBackend(s).DiscardState(context.Background(), testConfig(t)); err != nil {
		t.Fatal(err)
	}
	wantScripts(t, s.Scripts(), scriptInfo)
}

// A saved state is checked against the files the VM writes: its VHDXs, not the raw images.
func TestDiskFilesAreTheVHDXs(t *testing.T) {
	cfg := vmm.Config{Name: "m", Dir: t.TempDir(), Disks: []vmm.Disk{{Path: "/img/root.img", Serial: "skiff-root"}, {Path: "/m/data.img", Serial: "skiff-data"}}}
	got := (&Backend{}).DiskFiles(cfg)
	if len(got) != 2 {
		t.Fatalf("DiskFiles = %v", got)
	}
	for i, f := range got {
		if f == cfg.Disks[i].Path || filepath.Ext(f) != ".vhdx" {
			t.Errorf("disk %d: fingerprinted %s, want the VM's VHDX", i, f)
		}
	}
}
