package fsevents

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// hostPeer is the guest's side of a stream to a Host under test.
type hostPeer struct {
	t    *testing.T
	conn net.Conn
	dec  *json.Decoder
	host *Host
}

func startHost(t *testing.T, o HostOptions) *hostPeer {
	t.Helper()
	a, b := net.Pipe()
	h := NewHost(o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.Serve(ctx, a); close(done) }()
	t.Cleanup(func() { cancel(); b.Close(); <-done })
	p := &hostPeer{t: t, conn: b, dec: json.NewDecoder(bufio.NewReader(b)), host: h}
	if m := p.next(); len(m.Shares) != len(o.Shares) {
		t.Fatalf("hello: %+v", m)
	}
	return p
}

func (p *hostPeer) next() Message {
	p.t.Helper()
	p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var m Message
	if err := p.dec.Decode(&m); err != nil {
		p.t.Fatalf("from the host: %v", err)
	}
	return m
}

func (p *hostPeer) watch(share string, dirs ...string) {
	p.t.Helper()
	if err := json.NewEncoder(p.conn).Encode(Message{Watches: []Watch{{Share: share, Dirs: dirs}}}); err != nil {
		p.t.Fatal(err)
	}
	waitFor(p.t, "host watches", func() bool { return p.host.Watches() == len(dirs) })
}

// changes reads batches until want have all been reported, and fails on anything else.
func (p *hostPeer) changes(want ...Change) {
	p.t.Helper()
	var got []Change
	for len(got) < len(want) {
		for _, c := range p.next().Changes {
			if !slices.Contains(got, c) {
				got = append(got, c)
			}
		}
	}
	for _, c := range got {
		if !slices.Contains(want, c) {
			p.t.Fatalf("reported %+v; want only %+v", got, want)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestHostReportsWatchedFolders(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "proj", "sub"), 0o755)
	os.MkdirAll(filepath.Join(root, "other"), 0o755)
	p := startHost(t, HostOptions{Shares: []HostShare{{Tag: "s0", HostPath: root, GuestPath: "/g"}}})
	p.watch("s0", "proj", "proj/sub")

	os.WriteFile(filepath.Join(root, "proj", "a"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(root, "proj", "sub", "b"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(root, "other", "unwatched"), []byte("x"), 0o644)
	p.changes(Change{Share: "s0", Path: "proj/a"}, Change{Share: "s0", Path: "proj/sub/b"})

	// A burst of writes to one file is one change.
	for i := range 50 {
		os.WriteFile(filepath.Join(root, "proj", "a"), []byte{byte(i)}, 0o644)
	}
	if m := p.next(); len(m.Changes) != 1 || m.Changes[0].Path != "proj/a" {
		t.Fatalf("a burst on one file: %+v", m.Changes)
	}

	// Fewer folders watched: the others are dropped.
	p.watch("s0", "proj")
	os.WriteFile(filepath.Join(root, "proj", "sub", "c"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(root, "proj", "d"), []byte("x"), 0o644)
	p.changes(Change{Share: "s0", Path: "proj/d"})

	// The watched folder itself deleted: reported, and no longer watched.
	os.RemoveAll(filepath.Join(root, "proj"))
	p.changes(Change{Share: "s0", Path: "proj"}, Change{Share: "s0", Path: "proj/a"}, Change{Share: "s0", Path: "proj/d"},
		Change{Share: "s0", Path: "proj/sub"})
	waitFor(t, "the deleted folder's watch to go", func() bool { return p.host.Watches() == 0 })
}

func TestHostBurstBecomesRescans(t *testing.T) {
	root := t.TempDir()
	p := startHost(t, HostOptions{Shares: []HostShare{{Tag: "s0", HostPath: root, GuestPath: "/g"}}, MaxBatch: 10, Quiet: 200 * time.Millisecond})
	p.watch("s0", "")
	for i := range 100 {
		os.WriteFile(filepath.Join(root, "f"+string(rune('a'+i%26))+string(rune('a'+i/26))), nil, 0o644)
	}
	p.changes(Change{Share: "s0", Path: "", Rescan: true})
}

func TestHostRefusesOutsideTheShare(t *testing.T) {
	root, outside, deny := t.TempDir(), t.TempDir(), t.TempDir()
	os.Symlink(outside, filepath.Join(root, "out"))
	os.Symlink(deny, filepath.Join(root, "skiff"))
	os.Mkdir(filepath.Join(root, "in"), 0o755)
	var logged []string
	p := startHost(t, HostOptions{Shares: []HostShare{{Tag: "s0", HostPath: root, GuestPath: "/g"}}, Deny: []string{deny},
		Logf: func(f string, a ...any) { logged = append(logged, f) }})
	if err := json.NewEncoder(p.conn).Encode(Message{Watches: []Watch{{Share: "s0", Dirs: []string{"out", "../x", "skiff", "in", "/etc"}}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the one folder inside", func() bool { return p.host.Watches() == 1 })
	os.WriteFile(filepath.Join(outside, "secret"), nil, 0o644)
	os.WriteFile(filepath.Join(deny, "secret"), nil, 0o644)
	os.WriteFile(filepath.Join(root, "in", "ok"), nil, 0o644)
	p.changes(Change{Share: "s0", Path: "in/ok"})
}
