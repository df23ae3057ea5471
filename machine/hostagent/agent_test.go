package hostagent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/forward"
	"github.com/skiff-dev/skiff/images"
	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/machine/agentapi"
	"github.com/skiff-dev/skiff/machine/errdefs"
	"github.com/skiff-dev/skiff/vmm"
)

// fakeImage writes a tiny image (kernel, initrd, root) into dir: what the agent's VM
// config and Manager.Init read. The fake backend boots none of it.
func fakeImage(t testing.TB, dir string) (digest string) {
	t.Helper()
	m := images.Manifest{SchemaVersion: 1, Name: "fake", Version: "0-test", Arch: "amd64"}
	for _, f := range []struct{ role, name string }{{images.RoleKernel, "vmlinuz"}, {images.RoleInitrd, "initrd.img"}, {images.RoleRoot, "root.img"}} {
		b := []byte("fake " + f.role)
		if err := os.WriteFile(filepath.Join(dir, f.name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		m.Files = append(m.Files, images.File{Role: f.role, Name: f.name, Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])})
	}
	b, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// testMachine makes a machine "dev" in a fresh home, as init would.
func testMachine(t *testing.T) (machine.Dir, *machine.Spec) {
	t.Helper()
	h := machine.Home{Root: t.TempDir()}
	img := t.TempDir()
	digest := fakeImage(t, img)
	spec := &machine.Spec{SchemaVersion: 1, Name: "dev", Backend: "fake", CPUs: 1, MemoryMiB: 512, DiskGiB: 1,
		Engine: machine.EngineDocker, Image: machine.ImageRef{Dir: img, Digest: digest, Version: "0-test", Arch: "amd64"}}
	if err := h.Create(spec); err != nil {
		t.Fatal(err)
	}
	return h.Dir("dev"), spec
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startAgent runs an agent for d in the background; its Run's result arrives on the channel.
func startAgent(t *testing.T, d machine.Dir, spec *machine.Spec, b vmm.Backend) (*Agent, <-chan error) {
	t.Helper()
	a := &Agent{Dir: d, Spec: spec, Backend: b, Log: log.New(testWriter{t}, "", log.Lmicroseconds)}
	done := make(chan error, 1)
	ended := make(chan struct{})
	go func() {
		done <- a.Run(context.Background())
		close(ended)
	}()
	t.Cleanup(func() {
		select {
		case <-ended:
		default:
			agentapi.NewClient(d.Sock(machine.SockControl)).Stop(context.Background(), agentapi.StopRequest{Force: true})
			<-ended
		}
	})
	return a, done
}

// waitPhase follows the agent's events until it reports want; it fails when Run ends first.
func waitPhase(t *testing.T, d machine.Dir, done <-chan error, want agentapi.Phase) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	reached := errors.New("reached")
	for {
		err := agentapi.NewClient(d.Sock(machine.SockControl)).Events(ctx, func(e agentapi.Event) error {
			if e.Phase == want {
				return reached
			}
			return nil
		})
		if errors.Is(err, reached) {
			return
		}
		select {
		case err := <-done:
			t.Fatalf("the agent ended before %s: %v", want, err)
		case <-ctx.Done():
			t.Fatalf("no %s phase within 20s", want)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func wait(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("the agent did not end within 20s")
		return nil
	}
}

func TestAgentStartStop(t *testing.T) {
	d, spec := testMachine(t)
	b := newFakeBackend(t)
	_, done := startAgent(t, d, spec, b)
	waitPhase(t, d, done, agentapi.PhaseRunning)

	ctx := context.Background()
	st := d.Status(ctx)
	if st.State != machine.StateRunning || st.Agent == nil {
		t.Fatalf("status %+v, want running", st)
	}
	if a := st.Agent; a.Transport != mediumVsock || a.ReadyAt == nil || a.EngineAPI != "1.47" || a.Boot == nil || a.Boot.Warm {
		t.Fatalf("state %+v: want the vsock transport, ready, engine 1.47, a cold boot", a)
	}
	res, err := agentapi.NewClient(d.Sock(machine.SockControl)).Stop(ctx, agentapi.StopRequest{Cold: true})
	if err != nil || res.Suspended {
		t.Fatalf("stop: %+v %v", res, err)
	}
	if err := wait(t, done); err != nil {
		t.Fatalf("Run after a stop: %v", err)
	}
	if err := b.last().Wait(ctx); err != nil {
		t.Errorf("the VM ended with %v, want a guest power-off", err)
	}
	if st := d.Status(ctx); st.State != machine.StateStopped {
		t.Errorf("status after stop: %+v", st)
	}
	if _, err := os.Stat(d.Sock(machine.SockControl)); err == nil {
		t.Error("the control socket outlived the agent")
	}
}

func TestAgentCrash(t *testing.T) {
	d, spec := testMachine(t)
	b := newFakeBackend(t)
	_, done := startAgent(t, d, spec, b)
	waitPhase(t, d, done, agentapi.PhaseRunning)
	b.last().Crash()
	if err := wait(t, done); !errors.Is(err, ErrCrashed) {
		t.Fatalf("Run after the VM died: %v, want ErrCrashed", err)
	}
	if st := d.Status(context.Background()); st.State != machine.StateCrashed {
		t.Fatalf("status %+v, want crashed", st)
	}
}

func TestAgentBootFailure(t *testing.T) {
	d, spec := testMachine(t)
	b := newFakeBackend(t)
	b.StartErr = errors.New("the hypervisor refused")
	_, done := startAgent(t, d, spec, b)
	if err := wait(t, done); err == nil || !strings.Contains(err.Error(), "the hypervisor refused") {
		t.Fatalf("Run: %v", err)
	}
	if st := d.Status(context.Background()); st.State != machine.StateCrashed {
		t.Fatalf("status %+v, want crashed (the agent never stopped cleanly)", st)
	}
}

func TestAgentReadyTimeout(t *testing.T) {
	old := ReadyTimeout
	ReadyTimeout = 500 * time.Millisecond
	defer func() { ReadyTimeout = old }()
	d, spec := testMachine(t)
	b := newFakeBackend(t)
	b.NoReady = true
	_, done := startAgent(t, d, spec, b)
	if err := wait(t, done); err == nil || !strings.Contains(err.Error(), "did not signal ready") {
		t.Fatalf("Run: %v", err)
	}
	// Nothing outlives Run: the VM it could not use is killed.
	if err := b.last().Wait(context.Background()); err == nil || err.Error() != "killed" {
		t.Fatalf("the VM ended with %v, want killed", err)
	}
}

// TestAgentTwoRuns starts two agents for one machine at once: exactly one runs it.
func TestAgentTwoRuns(t *testing.T) {
	d, spec := testMachine(t)
	b := newFakeBackend(t)
	_, done1 := startAgent(t, d, spec, b)
	_, done2 := startAgent(t, d, spec, b)
	var lost error
	var winner <-chan error
	select {
	case lost = <-done1:
		winner = done2
	case lost = <-done2:
		winner = done1
	case <-time.After(20 * time.Second):
		t.Fatal("neither agent gave way")
	}
	if lost == nil || !strings.Contains(lost.Error(), "already has a running agent") {
		t.Fatalf("the second agent: %v", lost)
	}
	waitPhase(t, d, winner, agentapi.PhaseRunning)
	if _, err := agentapi.NewClient(d.Sock(machine.SockControl)).Stop(context.Background(), agentapi.StopRequest{Cold: true}); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, winner); err != nil {
		t.Fatal(err)
	}
}

// TestAgentStateWhileStarting reads the control API's state as fast as it can while the
// agent boots, runs and stops: under -race, every field the agent sets on the way is
// read here at the same time.
func TestAgentStateWhileStarting(t *testing.T) {
	d, spec := testMachine(t)
	b := newFakeBackend(t)
	b.ReadyAfter = 300 * time.Millisecond // a boot long enough for many reads
	ctx, cancel := context.WithCancel(context.Background())
	var reads atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := agentapi.NewClient(d.Sock(machine.SockControl))
			for ctx.Err() == nil {
				if st, err := cl.State(ctx); err == nil && st.Name == "dev" {
					reads.Add(1)
				}
			}
		}()
	}
	_, done := startAgent(t, d, spec, b)
	waitPhase(t, d, done, agentapi.PhaseRunning)
	if _, err := agentapi.NewClient(d.Sock(machine.SockControl)).Stop(context.Background(), agentapi.StopRequest{Cold: true}); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	cancel()
	wg.Wait()
	if reads.Load() == 0 {
		t.Fatal("no state was read while the agent ran")
	}
	t.Logf("%d state reads during the agent's life", reads.Load())
}

// TestAgentControlErrors checks that the control API's failures keep their class.
func TestAgentControlErrors(t *testing.T) {
	d, spec := testMachine(t)
	b := newFakeBackend(t)
	_, done := startAgent(t, d, spec, b)
	waitPhase(t, d, done, agentapi.PhaseRunning)
	_, err := agentapi.NewClient(d.Sock(machine.SockControl)).Connect(context.Background(), "nonsense")
	if !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("connect to an unknown service: %v, want ErrInvalid", err)
	}
}

// TestAgentSuspendFails: a save that fails after the guest prepared for it resumes the
// guest and shuts the machine down cold, saying why; nothing is kept for a warm start.
func TestAgentSuspendFails(t *testing.T) {
	d, spec := testMachine(t)
	b := &warmBackend{fakeBackend: newFakeBackend(t), SuspendErr: errors.New("the disk is full")}
	_, done := startAgent(t, d, spec, b)
	waitPhase(t, d, done, agentapi.PhaseRunning)
	vm := b.last()
	res, err := agentapi.NewClient(d.Sock(machine.SockControl)).Stop(context.Background(), agentapi.StopRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Suspended || !strings.Contains(res.NotSuspended, "the disk is full") {
		t.Fatalf("stop: %+v, want not suspended because the disk is full", res)
	}
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	if vm.resumes.Load() != 1 {
		t.Fatalf("the guest was told to carry on %d times, want 1", vm.resumes.Load())
	}
	if d.SavedStateInfo() != nil {
		t.Fatal("a failed suspend left a saved state")
	}
}

// TestAgentWarmStart: a stop saves the VM, and the next agent resumes it instead of
// booting. It binds the host ports the VM had forwarded before the guest says a word.
func TestAgentWarmStart(t *testing.T) {
	d, spec := testMachine(t)
	b := &warmBackend{fakeBackend: newFakeBackend(t)}
	port := freePort(t)
	b.Listeners = []forward.Listener{{Proto: "tcp", IP: "0.0.0.0", Port: port}}
	_, first := startAgent(t, d, spec, b)
	waitPhase(t, d, first, agentapi.PhaseRunning)
	waitForward(t, d, port)
	res, err := agentapi.NewClient(d.Sock(machine.SockControl)).Stop(context.Background(), agentapi.StopRequest{})
	if err != nil || !res.Suspended {
		t.Fatalf("stop: %+v %v, want suspended", res, err)
	}
	if err := wait(t, first); err != nil {
		t.Fatal(err)
	}
	if d.SavedStateInfo() == nil {
		t.Fatal("no saved state after a suspend")
	}
	b.Listeners, b.HoldPorts = nil, true
	_, second := startAgent(t, d, spec, b)
	waitPhase(t, d, second, agentapi.PhaseRunning)
	st := d.Status(context.Background())
	if st.Agent == nil || st.Agent.Boot == nil || !st.Agent.Boot.Warm {
		t.Fatalf("second start: %+v, want a warm start", st.Agent)
	}
	waitForward(t, d, port)
	if b.last().resumes.Load() != 1 {
		t.Fatal("the restored guest was not told to resume")
	}
}

// waitForward waits until the agent forwards the host port, bound.
func waitForward(t *testing.T, d machine.Dir, port int) {
	t.Helper()
	want := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := d.Status(context.Background())
		if st.Agent != nil {
			for _, f := range st.Agent.Forwards {
				if f.HostAddr == want && f.Error == "" {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no forward of %s within 10s: %+v", want, st.Agent)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
