package machine

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestCreateMakesKeysDiskAndConfigLast(t *testing.T) {
	h := Home{Root: t.TempDir()}
	s := &Spec{Name: "m1", CPUs: 1, MemoryMiB: 512, DiskGiB: 3, Engine: EngineDocker}
	if err := h.Create(s); err != nil {
		t.Fatal(err)
	}
	d := h.Dir("m1")
	for _, f := range []string{FileSecret, FileSSHKey, FileHostKey, FileConfig} {
		st, err := os.Stat(d.File(f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	pub, _ := os.ReadFile(d.File(FileHostKey + ".pub"))
	if _, c, _, _, err := ssh.ParseAuthorizedKey(pub); err != nil || !strings.Contains(c, "m1") {
		t.Fatalf("host public key %q: %v", pub, err)
	}
	if st, _ := os.Stat(d.File(FileDataDisk)); st.Size() != 3<<30 {
		t.Fatalf("data disk is %d bytes", st.Size())
	}
	if err := h.Create(s); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second create: %v", err)
	}
	if names, _ := h.List(); len(names) != 1 || names[0] != "m1" {
		t.Fatalf("list: %v", names)
	}
	if err := ResizeDataDisk(d, 2); err == nil {
		t.Fatal("the data disk shrank")
	}
}

func TestStatusWithoutAgent(t *testing.T) {
	h := Home{Root: t.TempDir()}
	d := h.Dir("m")
	os.MkdirAll(d.Path, 0o700)
	if st := d.Status(t.Context()); st.State != StateStopped {
		t.Fatalf("no agent, no pid file: %s", st.State)
	}
	os.WriteFile(d.File(FileAgentPID), []byte("12345\n"), 0o600)
	if st := d.Status(t.Context()); st.State != StateCrashed {
		t.Fatalf("pid file left by a dead agent: %s, want crashed", st.State)
	}
	l, err := TryLock(d.File(FileAgentLock))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	if st := d.Status(t.Context()); st.State != StateStarting {
		t.Fatalf("agent alive, control API silent: %s, want starting", st.State)
	}
}

func TestRunDirStaysShort(t *testing.T) {
	h := Home{Root: filepath.Join(t.TempDir(), strings.Repeat("long-directory-name/", 6))}
	d := h.Dir("a-fairly-long-machine-name")
	if n := len(d.Sock(SockEngine)); n > maxSockPath {
		t.Fatalf("socket path of %d bytes exceeds %d", n, maxSockPath)
	}
}

func TestRunDirFallbackIsPrivate(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows' temp folder is per user")
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	// A home so deep that its sockets move to the short fallback under the temp folder.
	h := Home{Root: filepath.Join(tmp, strings.Repeat("d", 90))}
	d := h.Dir("dev")
	if !strings.HasPrefix(d.Run, tmp) {
		t.Fatalf("run dir %s is not the fallback", d.Run)
	}
	if err := d.EnsureRun(); err != nil {
		t.Fatal(err)
	}
	// Someone else's folder (here: one open to all) in its place is refused.
	parent := filepath.Dir(d.Run)
	os.RemoveAll(parent)
	os.Mkdir(parent, 0o777)
	os.Chmod(parent, 0o777)
	if err := d.EnsureRun(); err == nil || !strings.Contains(err.Error(), "open to other users") {
		t.Fatalf("a world-writable parent: %v", err)
	}
	os.RemoveAll(parent)
	os.Symlink(t.TempDir(), parent)
	if err := d.EnsureRun(); err == nil || !strings.Contains(err.Error(), "not a folder") {
		t.Fatalf("a symlinked parent: %v", err)
	}
}

// TestLockSurvivesProbes: status probes take the agent's lock for an instant; an agent
// starting at that instant still gets it (with TryLock alone, about 1% of starts failed).
func TestLockSurvivesProbes(t *testing.T) {
	p := filepath.Join(t.TempDir(), "agent.lock")
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				Held(p)
			}
		}
	}()
	defer func() { close(stop); <-done }()
	for i := 0; i < 500; i++ {
		l, err := TryLockFor(p, 500*time.Millisecond)
		if err != nil {
			t.Fatalf("take %d: %v", i, err)
		}
		l.Unlock()
	}
}
