//go:build linux

package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/machine/machinetest"
)

// checkCoherent: whatever a share type caches in the guest, a build never reads a stale
// file. The host edits a file that the guest has just read (in place, longer, the same
// size, shorter; replaced by a rename; deleted; created under a name the guest just
// found missing), then tells the guest through an ssh session, not through the share;
// the guest's very next stat and read show the host's size, mtime and content.
func checkCoherent(t *testing.T, e *machinetest.Env, name, host, guest string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	f, c := filepath.Join(host, "coherent"), filepath.Join(host, "coherent-new")
	os.Remove(c)
	if err := os.WriteFile(f, []byte("first"), 0o644); err != nil {
		t.Fatal(err)
	}
	// For each line it reads, the guest answers with what it sees of both names. Meanwhile
	// it looks them up and reads them again and again, as a build or a watcher would, with
	// shell builtins only (no process to start, so many times a second even emulated), so
	// that whatever the guest may cache for a timeout (virtiofs' attributes and entries) is
	// always fresh from its own point of view when the host edits: however slow the ssh
	// round trip, a cache that trusted itself would be caught.
	script := fmt.Sprintf(`cd %s || exit 1
( while :; do [ -e coherent ]; [ -e coherent-new ]; read -r x < coherent; read -r x < coherent-new; done ) >/dev/null 2>&1 &
trap 'kill $!' EXIT
show() { if [ -e "$1" ]; then printf '%%s %%s|' "$(stat -c '%%s %%.9Y' -- "$1")" "$(cat -- "$1")"; else printf 'missing|'; fi; }
while read -r _; do show coherent; show coherent-new; echo; done`, guest)
	cmd := e.Cmd(ctx, "machine", "ssh", name, "--", script)
	in, _ := cmd.StdinPipe()
	outp, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { in.Close(); cancel(); cmd.Wait() }()
	lines := bufio.NewReader(outp)
	ask := func() string {
		if _, err := io.WriteString(in, "go\n"); err != nil {
			t.Fatalf("guest session: %v: %s", err, stderr.String())
		}
		l, err := lines.ReadString('\n')
		if err != nil {
			t.Fatalf("guest session: %v: %s", err, stderr.String())
		}
		return strings.TrimSpace(l)
	}
	want := func() string {
		var s strings.Builder
		for _, p := range []string{f, c} {
			st, err := os.Stat(p)
			if err != nil {
				s.WriteString("missing|")
				continue
			}
			b, _ := os.ReadFile(p)
			mt := st.ModTime()
			fmt.Fprintf(&s, "%d %d.%09d %s|", st.Size(), mt.Unix(), mt.Nanosecond(), b)
		}
		return s.String()
	}
	write := func(p, s string) func() error { return func() error { return os.WriteFile(p, []byte(s), 0o644) } }
	steps := []struct {
		what string
		edit func() error
	}{
		{"nothing yet", func() error { return nil }},
		{"rewritten in place, longer", write(f, "second, longer")},
		{"rewritten in place, the same size", write(f, "SECOND, LONGER")},
		{"rewritten in place, shorter", write(f, "3rd")},
		{"replaced by a rename", func() error {
			if err := os.WriteFile(f+".tmp", []byte("fourth, by rename"), 0o644); err != nil {
				return err
			}
			return os.Rename(f+".tmp", f)
		}},
		{"created where the guest found nothing", write(c, "created")},
		{"deleted", func() error { return os.Remove(f) }},
		{"created again", write(f, "again")},
		{"its mtime set alone", func() error { return os.Chtimes(f, time.Now(), time.Unix(981173106, 5)) }},
	}
	for _, s := range steps {
		if err := s.edit(); err != nil {
			t.Fatal(err)
		}
		w := want()
		if got := ask(); got != w {
			t.Fatalf("%s: right after the host's edit (%s) the guest saw\n  %s\nwhere the host has\n  %s", guest, s.what, got, w)
		}
	}
}

// What a guest descriptor held open across a host's save by rename reads, after the
// guest's stat of the name showed the new file (checkHeld).
const (
	// heldOld: the old file, as on a local file system (virtiofs: FUSE looks names up
	// afresh and gives the new file an inode of its own).
	heldOld = "old\nrc=0"
	// heldStale: ESTALE (Skiff's 9p server). 9p gives the guest one inode per dentry it
	// holds, which the stat sized as the new file; the old read past its end used to
	// spin in the guest's kernel for ever (an unkillable reader, a share that kept the
	// machine from suspending).
	heldStale = "Stale file handle\nrc=1"
)

// checkHeld: guest processes hold files open while the host appends to one (a log the
// guest follows), rewrites one in place and saves one by rename (an editor). After a
// read by name, each held descriptor reads on from where it was in the host's file, the
// names show the host's content, and nothing hangs; the descriptor held across the save
// reads what saved says. QEMU's virtio-9p fails this: the guest caches pages of its
// files, and both names and descriptors read NUL bytes where the host's new bytes are.
func checkHeld(t *testing.T, e *machinetest.Env, name, host, guest, saved string) {
	t.Helper()
	for f, s := range map[string]string{"held": "old\n", "log": "line1\n", "inplace": "old\n"} {
		if err := os.WriteFile(filepath.Join(host, f), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := e.Cmd(ctx, "machine", "ssh", name, "--", "exec 2>&1; cd "+guest+" && exec 3< held 4< log 5< inplace && "+
		"cat <&4 >/dev/null && cat <&5 >/dev/null && echo open && read -r _ && "+
		"echo '== log' && cat log && cat <&4 && echo '== inplace' && cat inplace && cat <&5 && "+
		"echo '== saved' && stat -c %s held && cat held && { cat <&3; echo rc=$?; }")
	in, _ := cmd.StdinPipe()
	outp, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewReader(outp)
	if l, err := lines.ReadString('\n'); err != nil || l != "open\n" {
		t.Fatalf("the guest did not open the files: %q %v", l, err)
	}
	f := filepath.Join(host, "held")
	edits := []func() error{
		func() error {
			l, err := os.OpenFile(filepath.Join(host, "log"), os.O_APPEND|os.O_WRONLY, 0)
			if err == nil {
				_, err = l.WriteString("line2\n")
				err = errors.Join(err, l.Close())
			}
			return err
		},
		func() error {
			return os.WriteFile(filepath.Join(host, "inplace"), []byte("rewritten, longer\n"), 0o644)
		},
		func() error { return os.WriteFile(f+".tmp", []byte("new, saved by rename\n"), 0o644) },
		func() error { return os.Rename(f+".tmp", f) },
	}
	for _, edit := range edits {
		if err := edit(); err != nil {
			t.Fatal(err)
		}
	}
	in.Write([]byte("go\n"))
	b, _ := io.ReadAll(lines)
	err := cmd.Wait()
	got := string(b)
	if ctx.Err() != nil {
		t.Fatalf("%s: a guest read of a descriptor held across the host's edits hung: %s", guest, got)
	}
	want := "== log\nline1\nline2\nline2\n== inplace\nrewritten, longer\nitten, longer\n== saved\n21\nnew, saved by rename\n"
	if _, after, ok := strings.Cut(got, want); err != nil || !ok || !strings.Contains(after, saved) {
		want += "then " + saved
		t.Fatalf("%s: files held open while the host edited them: %v; the guest printed\n%s\nwant\n%s", guest, err, got, want)
	}
}
