package fsevents

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// watcher is a plain inotify watcher, standing for one in a container.
type watcher struct {
	t  *testing.T
	fd int
}

func newWatcher(t *testing.T, dirs ...string) *watcher {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	for _, d := range dirs {
		if _, err := unix.InotifyAddWatch(fd, d, unix.IN_ALL_EVENTS&^(unix.IN_ACCESS|unix.IN_OPEN|unix.IN_CLOSE_NOWRITE)); err != nil {
			t.Fatal(err)
		}
	}
	return &watcher{t: t, fd: fd}
}

// events reads what is queued, as "MASK name" words (CREATE, DELETE, ...).
func (w *watcher) events() []string {
	var out []string
	buf := make([]byte, 64<<10)
	n, _ := unix.Read(w.fd, buf)
	for off := 0; off+unix.SizeofInotifyEvent <= n; {
		mask := binary.NativeEndian.Uint32(buf[off+4:])
		l := int(binary.NativeEndian.Uint32(buf[off+12:]))
		name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+l]), "\x00")
		off += unix.SizeofInotifyEvent + l
		for _, m := range []struct {
			bit  uint32
			name string
		}{{unix.IN_CREATE, "CREATE"}, {unix.IN_DELETE, "DELETE"}, {unix.IN_MODIFY, "MODIFY"}, {unix.IN_ATTRIB, "ATTRIB"},
			{unix.IN_CLOSE_WRITE, "CLOSE_WRITE"}, {unix.IN_MOVED_FROM, "MOVED_FROM"}, {unix.IN_MOVED_TO, "MOVED_TO"}} {
			if mask&m.bit != 0 {
				out = append(out, m.name+" "+name)
			}
		}
	}
	return out
}

// newSession is a guest session on a local folder standing for a share, with no stream.
func newSession(t *testing.T, mount string) *guestSession {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	var st unix.Stat_t
	unix.Stat(mount, &st)
	g := NewGuest(GuestOptions{Self: -1, Logf: t.Logf})
	s := &guestSession{g: g, procs: newProcScanner("/proc", -1), fd: fd, shares: map[string]*gshare{}, byWD: map[int]*gdir{}, pins: pinner{fds: map[string]int{}, roots: map[string]bool{}}}
	s.shares["s0"] = &gshare{tag: "s0", mount: mount, dev: st.Dev, dirs: map[string]*gdir{}, where: map[uint64]string{}}
	return s
}

// hostChange makes a change the guest's kernel "did not see": the session's own watch
// loses its events, as it does when the change is made on the host side of a share.
func hostChange(s *guestSession, w *watcher, change func()) {
	change()
	buf := make([]byte, 64<<10)
	for {
		if n, _ := unix.Read(s.fd, buf); n <= 0 {
			break
		}
	}
	w.events()
}

func TestGuestRaisesHostChanges(t *testing.T) {
	mount := t.TempDir()
	proj := filepath.Join(mount, "proj")
	os.MkdirAll(filepath.Join(proj, "sub"), 0o755)
	os.WriteFile(filepath.Join(proj, "a"), []byte("one"), 0o644)
	os.WriteFile(filepath.Join(proj, "gone"), []byte("x"), 0o644)
	os.Mkdir(filepath.Join(proj, "gonedir"), 0o755)
	s := newSession(t, mount)
	w := newWatcher(t, proj, filepath.Join(proj, "sub"))
	s.follow(s.shares["s0"], inodesOf(t, proj, filepath.Join(proj, "sub")), map[string]bool{"/proj": true})
	if got := slices.Sorted(mapKeys(s.shares["s0"].dirs)); !slices.Equal(got, []string{"proj", "proj/sub"}) {
		t.Fatalf("followed %v", got)
	}
	cases := []struct {
		what   string
		change func()
		paths  []string
		want   []string
	}{
		{"modify", func() { os.WriteFile(filepath.Join(proj, "a"), []byte("two"), 0o644) }, []string{"proj/a"},
			[]string{"MODIFY a", "CLOSE_WRITE a"}},
		{"create", func() { os.WriteFile(filepath.Join(proj, "sub", "new"), []byte("n"), 0o644) }, []string{"proj/sub/new"},
			[]string{"ATTRIB new", "MODIFY new", "CLOSE_WRITE new"}},
		{"delete", func() { os.Remove(filepath.Join(proj, "gone")) }, []string{"proj/gone"},
			[]string{"CREATE gone", "DELETE gone"}},
		{"mkdir", func() { os.Mkdir(filepath.Join(proj, "d"), 0o755) }, []string{"proj/d"}, []string{"ATTRIB d"}},
		{"rmdir", func() { os.Remove(filepath.Join(proj, "gonedir")) }, []string{"proj/gonedir"},
			[]string{"CREATE gonedir", "DELETE gonedir"}},
		{"rename", func() { os.Rename(filepath.Join(proj, "a"), filepath.Join(proj, "b")) }, []string{"proj/a", "proj/b"},
			[]string{"CREATE a", "DELETE a", "ATTRIB b", "MODIFY b", "CLOSE_WRITE b"}},
	}
	for _, c := range cases {
		hostChange(s, w, c.change)
		var changes []Change
		for _, p := range c.paths {
			changes = append(changes, Change{Share: "s0", Path: p})
		}
		s.drain()
		s.apply(changes)
		if got := w.events(); !slices.Equal(got, c.want) {
			t.Errorf("%s: the watcher saw %q, want %q", c.what, got, c.want)
		}
		// The host reports what the guest's own operations did to it: nothing more.
		s.drain()
		s.apply(changes)
		if got := w.events(); len(got) != 0 {
			t.Errorf("%s: the echo raised %q", c.what, got)
		}
	}
	// What the guest changes itself, its watchers saw already: the host's report of it
	// raises nothing.
	os.WriteFile(filepath.Join(proj, "sub", "mine"), []byte("guest"), 0o644)
	os.WriteFile(filepath.Join(proj, "b"), []byte("guest wrote"), 0o644)
	w.events()
	s.drain()
	s.apply([]Change{{Share: "s0", Path: "proj/sub/mine"}, {Share: "s0", Path: "proj/b"}})
	if got := w.events(); len(got) != 0 {
		t.Errorf("a guest's own change raised %q again", got)
	}
	// A rescan finds what changed in a folder.
	hostChange(s, w, func() {
		os.WriteFile(filepath.Join(proj, "r1"), nil, 0o644)
		os.Remove(filepath.Join(proj, "sub", "new"))
	})
	s.drain()
	s.apply([]Change{{Share: "s0", Path: "proj", Rescan: true}, {Share: "s0", Path: "proj/sub", Rescan: true}})
	got := w.events()
	for _, want := range []string{"ATTRIB r1", "CREATE new", "DELETE new"} {
		if !slices.Contains(got, want) {
			t.Errorf("rescan: the watcher saw %q, want %q among them", got, want)
		}
	}
}

func TestGuestBudget(t *testing.T) {
	mount := t.TempDir()
	s := newSession(t, mount)
	s.g.opts.Budget = 3
	w := newWatcher(t, mount)
	s.follow(s.shares["s0"], inodesOf(t, mount), map[string]bool{"/": true})
	var changes []Change
	hostChange(s, w, func() {
		for i := range 10 {
			name := "f" + string(rune('0'+i))
			os.WriteFile(filepath.Join(mount, name), nil, 0o644)
			changes = append(changes, Change{Share: "s0", Path: name})
		}
	})
	s.drain()
	s.apply(changes)
	// Three raised (ATTRIB, then write events for an empty file: MODIFY via its mtime,
	// CLOSE_WRITE); the rest are one IN_ATTRIB on the folder itself.
	got := w.events()
	if n := countPrefix(got, "ATTRIB f"); n != 3 || !slices.Contains(got, "ATTRIB ") {
		t.Fatalf("with a budget of 3: %q", got)
	}
}

func countPrefix(s []string, p string) int {
	n := 0
	for _, x := range s {
		if strings.HasPrefix(x, p) {
			n++
		}
	}
	return n
}

func inodesOf(t *testing.T, dirs ...string) map[uint64]bool {
	out := map[uint64]bool{}
	for _, d := range dirs {
		var st unix.Stat_t
		if err := unix.Stat(d, &st); err != nil {
			t.Fatal(err)
		}
		out[st.Ino] = true
	}
	return out
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

var _ = time.Second

func TestPinsFollowBinds(t *testing.T) {
	mount := t.TempDir()
	for _, d := range []string{"proj/sub/deeper", "proj/other", "elsewhere/x"} {
		os.MkdirAll(filepath.Join(mount, d), 0o755)
	}
	p := pinner{fds: map[string]int{}, roots: map[string]bool{}}
	defer p.close()
	sh := &gshare{mount: mount}
	p.sync(sh, map[string]bool{"/proj": true, "/": true, "/../escape": true})
	want := []string{"proj/other", "proj/sub", "proj/sub/deeper"}
	var got []string
	for q := range p.fds {
		rel, _ := filepath.Rel(mount, q)
		got = append(got, rel)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("held %v, want %v (the bind's folders, not the whole share's)", got, want)
	}
	p.sync(sh, map[string]bool{"/": true})
	if len(p.fds) != 0 || len(p.roots) != 0 {
		t.Fatalf("still held after the bind went: %v", p.fds)
	}
}

// A modified file's event leaves its mtime as the host left it, or on a mount that
// keeps whole seconds (9p) moves a recent one forward, never back: chokidar drops a
// change whose mtime went back below its atime, and make would miss a newer file.
func TestEmitModifyKeepsMtime(t *testing.T) {
	dir := t.TempDir()
	w := newWatcher(t, dir)
	mtimeOf := func(p string) time.Time {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.ModTime()
	}
	file := func(name string, mtime time.Time) (string, attrs) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		a, _, err := statEntry(p)
		if err != nil {
			t.Fatal(err)
		}
		w.events()
		return p, a
	}
	old := time.Now().Add(-time.Hour).Truncate(time.Second).Add(123456789)

	p, a := file("exact", old)
	if err := emitWrite(p, a, grainNanos); err != nil {
		t.Fatal(err)
	}
	if got := w.events(); !slices.Equal(got, []string{"MODIFY exact", "CLOSE_WRITE exact"}) {
		t.Errorf("virtiofs: the watcher saw %q", got)
	}
	if got := mtimeOf(p); !got.Equal(old) {
		t.Errorf("virtiofs: the mtime moved from %v to %v", old, got)
	}

	p, a = file("archived", old)
	if err := emitWrite(p, a, grainSeconds); err != nil {
		t.Fatal(err)
	}
	if got := w.events(); !slices.Equal(got, []string{"ATTRIB archived"}) {
		t.Errorf("9p, an old mtime: the watcher saw %q, want only ATTRIB", got)
	}
	if got := mtimeOf(p); !got.Equal(old) {
		t.Errorf("9p, an old mtime: it moved from %v to %v", old, got)
	}

	recent := time.Now().Add(-500 * time.Millisecond).Truncate(time.Second).Add(987654321)
	if recent.After(time.Now()) {
		recent = recent.Add(-time.Second)
	}
	p, a = file("fresh", recent)
	if err := emitWrite(p, a, grainSeconds); err != nil {
		t.Fatal(err)
	}
	if got := w.events(); !slices.Equal(got, []string{"MODIFY fresh", "CLOSE_WRITE fresh"}) {
		t.Errorf("9p, a recent mtime: the watcher saw %q", got)
	}
	if got := mtimeOf(p); got.Before(recent) || got.After(time.Now()) {
		t.Errorf("9p, a recent mtime: %v became %v, want between it and now", recent, got)
	}
}
