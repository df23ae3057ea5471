package machine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

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
