//go:build linux || darwin

package share9p

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hugelgupf/p9/linux"
	"github.com/hugelgupf/p9/p9"
)

// client connects a real 9P client to Serve over a socket pair.
func client(t *testing.T, opt Options) p9.File {
	t.Helper()
	a, b := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Serve(ctx, a, opt); close(done) }()
	t.Cleanup(func() { hangUp(cancel, done) })
	c, err := p9.NewClient(b)
	if err != nil {
		t.Fatal(err)
	}
	root, err := c.Attach("")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// hangUp ends a connection and waits for Serve. The pause first lets the p9 library's
// spare receive goroutine start: it adds itself to the server's WaitGroup when it runs,
// which races (in the library, harmlessly) with the Wait of a connection ending at once.
func hangUp(end func(), done <-chan struct{}) {
	time.Sleep(20 * time.Millisecond)
	end()
	<-done
}

// direct is the server's own root node, for what the p9 client cannot send (xattrs) or
// the server would refuse before the node sees it (names with a slash).
func direct(t *testing.T, opt Options, umask os.FileMode) *node {
	t.Helper()
	s, err := newShare(opt, umask)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.root.Close() })
	f, err := s.Attach()
	if err != nil {
		t.Fatal(err)
	}
	return f.(*node)
}

// layout makes base/share (the root, with d/f and top) and base/out/secret beside it.
func layout(t *testing.T) (base, root string) {
	t.Helper()
	base = t.TempDir()
	root = filepath.Join(base, "share")
	must(t, os.MkdirAll(filepath.Join(root, "d"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "d", "f"), []byte("inside"), 0o644))
	must(t, os.WriteFile(filepath.Join(root, "top"), []byte("top file"), 0o644))
	must(t, os.MkdirAll(filepath.Join(base, "out"), 0o755))
	must(t, os.WriteFile(filepath.Join(base, "out", "secret"), []byte("SECRET"), 0o644))
	return base, root
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func walk(t *testing.T, f p9.File, names ...string) p9.File {
	t.Helper()
	_, g, err := f.Walk(names)
	if err != nil {
		t.Fatalf("walk %v: %v", names, err)
	}
	return g
}

func read(t *testing.T, f p9.File) string {
	t.Helper()
	if _, _, err := f.Open(p9.ReadOnly); err != nil {
		t.Fatalf("open: %v", err)
	}
	buf := make([]byte, 256)
	n, _ := f.ReadAt(buf, 0)
	return string(buf[:n])
}

func hostRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// snapshot lists every path below dir with its size, mode and content.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", p, err)
			return nil
		}
		fmt.Fprintf(&b, "%s %v %d %v", p, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			c, _ := os.ReadFile(p)
			fmt.Fprintf(&b, " %q", c)
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			l, _ := os.Readlink(p)
			fmt.Fprintf(&b, " -> %s", l)
		}
		b.WriteByte('\n')
		return nil
	})
	return b.String()
}

func TestReadWrite(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "hello"), []byte("from the host"), 0o644)
	root := client(t, Options{Root: dir})
	if got := read(t, walk(t, root, "hello")); got != "from the host" {
		t.Fatalf("read %q", got)
	}
	d := walk(t, root)
	nf, _, _, err := d.Create("new", p9.WriteOnly, 0o644, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nf.WriteAt([]byte("from the guest"), 0); err != nil {
		t.Fatal(err)
	}
	nf.Close()
	if got := hostRead(t, filepath.Join(dir, "new")); got != "from the guest" {
		t.Fatalf("host sees %q", got)
	}
}

// Every operation that can change the host is refused on a read-only share, at the
// server, and the folder is left exactly as it was.
func TestReadOnlyRefusesEveryChange(t *testing.T) {
	base, dir := layout(t)
	must(t, os.Symlink("top", filepath.Join(dir, "link")))
	before := snapshot(t, base)
	root := client(t, Options{Root: dir, ReadOnly: true})

	opens := map[string]p9.OpenFlags{
		"write":             p9.WriteOnly,
		"read-write":        p9.ReadWrite,
		"read-only+O_TRUNC": p9.ReadOnly | dotlTrunc,
		"write+O_TRUNC":     p9.WriteOnly | dotlTrunc,
	}
	for what, flags := range opens {
		if _, _, err := walk(t, root, "top").Open(flags); !errors.Is(err, linux.EROFS) {
			t.Errorf("open %s on a read-only share: %v, want EROFS", what, err)
		}
	}
	top, d := walk(t, root, "top"), walk(t, root, "d")
	when := p9.SetAttr{MTimeSeconds: 1, Permissions: 0o777, Size: 0, UID: 1, GID: 1}
	changes := map[string]func() error{
		"create": func() error { _, _, _, err := walk(t, root).Create("g", p9.WriteOnly, 0o644, 0, 0); return err },
		"mkdir":  func() error { _, err := walk(t, root).Mkdir("g", 0o755, 0, 0); return err },
		"symlink": func() error {
			_, err := walk(t, root).Symlink("top", "g", 0, 0)
			return err
		},
		"mknod":    func() error { _, err := walk(t, root).Mknod("g", p9.ModeNamedPipe|0o644, 0, 0, 0, 0); return err },
		"link":     func() error { return walk(t, root).Link(top, "g") },
		"renameat": func() error { return walk(t, root).RenameAt("top", d, "g") },
		"rename":   func() error { return walk(t, root, "top").Rename(d, "g") },
		"unlink":   func() error { return walk(t, root).UnlinkAt("top", 0) },
		"rmdir":    func() error { return walk(t, root).UnlinkAt("d", atRemoveDir) },
		"truncate": func() error { return top.SetAttr(p9.SetAttrMask{Size: true}, when) },
		"chmod":    func() error { return top.SetAttr(p9.SetAttrMask{Permissions: true}, when) },
		"chown":    func() error { return top.SetAttr(p9.SetAttrMask{UID: true, GID: true}, when) },
		"utimes": func() error {
			return top.SetAttr(p9.SetAttrMask{MTime: true, MTimeNotSystemTime: true}, when)
		},
		"dir utimes": func() error { return d.SetAttr(p9.SetAttrMask{ATime: true, MTime: true}, when) },
	}
	for what, change := range changes {
		if err := change(); !errors.Is(err, linux.EROFS) {
			t.Errorf("%s on a read-only share: %v, want EROFS", what, err)
		}
	}
	n := direct(t, Options{Root: dir, ReadOnly: true}, 0o022)
	if err := n.SetXattr("user.x", []byte("y"), 0); !errors.Is(err, linux.EROFS) {
		t.Errorf("setxattr on a read-only share: %v", err)
	}
	if err := n.RemoveXattr("user.x"); !errors.Is(err, linux.EROFS) {
		t.Errorf("removexattr on a read-only share: %v", err)
	}
	if _, err := n.WriteAt([]byte("x"), 0); !errors.Is(err, linux.EROFS) {
		t.Errorf("write on a read-only share: %v", err)
	}
	if got := read(t, walk(t, root, "top")); got != "top file" {
		t.Errorf("reading a read-only share: %q", got)
	}
	if after := snapshot(t, base); after != before {
		t.Fatalf("the host changed through a read-only share:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// The audit's finding: read-only + O_TRUNC emptied the host file.
func TestReadOnlyTruncLeavesFileIntact(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "keep")
	must(t, os.WriteFile(p, []byte("precious"), 0o644))
	root := client(t, Options{Root: dir, ReadOnly: true})
	if _, _, err := walk(t, root, "keep").Open(p9.ReadOnly | dotlTrunc); !errors.Is(err, linux.EROFS) {
		t.Fatalf("open O_RDONLY|O_TRUNC on a read-only share: %v, want EROFS", err)
	}
	if got := hostRead(t, p); got != "precious" {
		t.Fatalf("the file is now %q", got)
	}
}

func TestTruncOnWritableShare(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	must(t, os.WriteFile(p, []byte("old contents"), 0o644))
	root := client(t, Options{Root: dir})
	f := walk(t, root, "f")
	if _, _, err := f.Open(p9.WriteOnly | dotlTrunc); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("new"), 0); err != nil {
		t.Fatal(err)
	}
	if got := hostRead(t, p); got != "new" {
		t.Fatalf("after O_TRUNC and a write: %q", got)
	}
}

func TestNoEscape(t *testing.T) {
	base, dir := layout(t)
	must(t, os.Symlink("../out", filepath.Join(dir, "rel")))
	must(t, os.Symlink(filepath.Join(base, "out"), filepath.Join(dir, "abs")))
	root := client(t, Options{Root: dir})
	if _, _, err := root.Walk([]string{".."}); err == nil {
		t.Fatal("walked above the share root")
	}
	for _, l := range []string{"rel", "abs"} {
		if _, _, err := root.Walk([]string{l, "secret"}); err == nil {
			t.Fatalf("walked through the symlink %s out of the share", l)
		}
		// The link itself is the guest's to read and resolve in its own mount.
		target, err := walk(t, root, l).Readlink()
		if err != nil || target == "" {
			t.Fatalf("readlink %s: %q %v", l, target, err)
		}
	}
	n := direct(t, Options{Root: dir}, 0o022)
	for _, name := range []string{"..", ".", "", "d/f", "../out", "rel/secret", "a\x00b"} {
		if _, _, err := n.Walk([]string{name}); err == nil {
			t.Errorf("the node walked %q", name)
		}
	}
}

// A folder the guest walked into is swapped, on the host, for a symlink to outside the
// share or to another folder in it: nothing the guest does through its old fid reaches
// through the symlink.
func TestFolderSwappedForSymlinkAfterWalk(t *testing.T) {
	for _, target := range []string{"out", "abs", "inside"} {
		t.Run(target, func(t *testing.T) {
			base, dir := layout(t)
			must(t, os.MkdirAll(filepath.Join(dir, "other"), 0o755))
			must(t, os.WriteFile(filepath.Join(dir, "other", "f"), []byte("other"), 0o644))
			root := client(t, Options{Root: dir})
			d := walk(t, root, "d")
			opened := walk(t, root, "d")
			walk(t, opened, "f") // this fid has its folder open already

			must(t, os.Rename(filepath.Join(dir, "d"), filepath.Join(dir, "d.old")))
			link := map[string]string{"out": "../out", "abs": filepath.Join(base, "out"), "inside": "other"}[target]
			must(t, os.Symlink(link, filepath.Join(dir, "d")))
			must(t, os.WriteFile(filepath.Join(base, "out", "f"), []byte("SECRET"), 0o644))
			before := snapshot(t, filepath.Join(base, "out")) + snapshot(t, filepath.Join(dir, "other"))

			if _, f, err := d.Walk([]string{"f"}); err == nil {
				if got := read(t, f); got != "inside" {
					t.Fatalf("walked through the swapped symlink and read %q", got)
				}
			}
			if _, _, _, err := d.Create("planted", p9.WriteOnly, 0o644, 0, 0); err == nil {
				if _, err := os.Stat(filepath.Join(dir, "d.old", "planted")); err != nil {
					t.Fatal("created a file through the swapped symlink")
				}
			}
			d.UnlinkAt("f", 0)
			// The fid whose folder was open still means the folder it walked into.
			if got := read(t, walk(t, opened, "f")); got != "inside" {
				t.Fatalf("the open folder now reads %q", got)
			}
			if after := snapshot(t, filepath.Join(base, "out")) + snapshot(t, filepath.Join(dir, "other")); after != before {
				t.Fatalf("reached through the symlink:\n%s\n%s", before, after)
			}
		})
	}
}

// A file the guest walked to is swapped for a symlink before it opens it: the open never
// follows, and O_TRUNC truncates nothing.
func TestFileSwappedForSymlinkBeforeOpen(t *testing.T) {
	base, dir := layout(t)
	must(t, os.WriteFile(filepath.Join(dir, "victim"), []byte("victim"), 0o644))
	root := client(t, Options{Root: dir})
	for _, link := range []string{"../out/secret", filepath.Join(base, "out", "secret"), "victim"} {
		os.Remove(filepath.Join(dir, "top"))
		must(t, os.WriteFile(filepath.Join(dir, "top"), []byte("top file"), 0o644))
		f := walk(t, root, "top")
		os.Remove(filepath.Join(dir, "top"))
		must(t, os.Symlink(link, filepath.Join(dir, "top")))
		if _, _, err := f.Open(p9.ReadWrite | dotlTrunc); err == nil {
			t.Fatalf("opened %s through the swapped symlink", link)
		}
		if err := f.SetAttr(p9.SetAttrMask{Size: true}, p9.SetAttr{}); err == nil {
			t.Fatalf("truncated %s through the swapped symlink", link)
		}
		if err := f.SetAttr(p9.SetAttrMask{Permissions: true}, p9.SetAttr{Permissions: 0o666}); err == nil {
			t.Fatalf("chmodded %s through the swapped symlink", link)
		}
	}
	if got := hostRead(t, filepath.Join(base, "out", "secret")); got != "SECRET" {
		t.Fatalf("outside file is now %q", got)
	}
	if got := hostRead(t, filepath.Join(dir, "victim")); got != "victim" {
		t.Fatalf("inside file is now %q", got)
	}
	if fi, _ := os.Stat(filepath.Join(base, "out", "secret")); fi.Mode().Perm() != 0o644 {
		t.Fatalf("outside file's mode is now %v", fi.Mode())
	}
}

// Rename and link used to fail with EFAULT (the library's local files type-asserted the
// other fid and found a wrapper); unlink was ENOSYS.
func TestRenameLinkUnlink(t *testing.T) {
	_, dir := layout(t)
	must(t, os.MkdirAll(filepath.Join(dir, "e"), 0o755))
	root := client(t, Options{Root: dir})
	r, d, e := walk(t, root), walk(t, root, "d"), walk(t, root, "e")

	must(t, r.RenameAt("top", r, "top2")) // same folder
	must(t, d.RenameAt("f", e, "f2"))     // across folders
	moved := walk(t, root, "e", "f2")
	must(t, moved.Rename(d, "f3")) // Trename of a walked fid
	if got := read(t, walk(t, root, "d", "f3")); got != "inside" {
		t.Fatalf("renamed file reads %q", got)
	}
	must(t, walk(t, root, "d").Link(walk(t, root, "top2"), "hard")) // across folders
	must(t, walk(t, root).Link(walk(t, root, "top2"), "hard2"))     // same folder
	a, _ := os.Stat(filepath.Join(dir, "top2"))
	for _, p := range []string{"d/hard", "hard2"} {
		b, err := os.Stat(filepath.Join(dir, p))
		if err != nil || !os.SameFile(a, b) {
			t.Fatalf("%s is not a hard link of top2: %v", p, err)
		}
	}
	if err := walk(t, root).Link(walk(t, root, "d"), "dirlink"); err == nil {
		t.Fatal("hard-linked a folder")
	}
	must(t, walk(t, root).UnlinkAt("hard2", 0))
	if err := walk(t, root).UnlinkAt("e", 0); !errors.Is(err, linux.EISDIR) {
		t.Fatalf("unlink of a folder without AT_REMOVEDIR: %v", err)
	}
	if err := walk(t, root).UnlinkAt("top2", atRemoveDir); !errors.Is(err, linux.ENOTDIR) {
		t.Fatalf("rmdir of a file: %v", err)
	}
	must(t, walk(t, root).UnlinkAt("e", atRemoveDir))
	for p, want := range map[string]bool{"top": false, "top2": true, "hard2": false, "e": false, "d/f3": true, "d/hard": true} {
		if _, err := os.Lstat(filepath.Join(dir, p)); (err == nil) != want {
			t.Errorf("%s exists: %v, want %v", p, err == nil, want)
		}
	}
	// A renamed folder's fids follow it.
	must(t, r.RenameAt("d", r, "dd"))
	if got := read(t, walk(t, d, "f3")); got != "inside" {
		t.Fatalf("after renaming its folder, a child reads %q", got)
	}
}

func TestSetAttr(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	must(t, os.WriteFile(p, []byte("0123456789"), 0o644))
	must(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	must(t, os.Symlink("f", filepath.Join(dir, "l")))
	root := client(t, Options{Root: dir})
	f := walk(t, root, "f")

	must(t, f.SetAttr(p9.SetAttrMask{Permissions: true}, p9.SetAttr{Permissions: 0o4751}))
	if fi, _ := os.Stat(p); fi.Mode() != 0o751 {
		t.Errorf("chmod 4751 made %v, want -rwxr-x--x (no set-id bits)", fi.Mode())
	}
	must(t, f.SetAttr(p9.SetAttrMask{Size: true}, p9.SetAttr{Size: 4}))
	if got := hostRead(t, p); got != "0123" {
		t.Errorf("truncate to 4: %q", got)
	}
	when := time.Date(2001, 2, 3, 4, 5, 6, 7000, time.UTC)
	must(t, f.SetAttr(p9.SetAttrMask{MTime: true, MTimeNotSystemTime: true, ATime: true, ATimeNotSystemTime: true},
		p9.SetAttr{MTimeSeconds: uint64(when.Unix()), MTimeNanoSeconds: 7000, ATimeSeconds: uint64(when.Unix())}))
	if fi, _ := os.Stat(p); !fi.ModTime().Equal(when) {
		t.Errorf("mtime is %v, want %v", fi.ModTime(), when)
	}
	// Only the mtime: the atime stays.
	_, _, before, _ := f.GetAttr(p9.AttrMaskAll)
	must(t, f.SetAttr(p9.SetAttrMask{MTime: true, MTimeNotSystemTime: true}, p9.SetAttr{MTimeSeconds: 5}))
	_, _, after, _ := f.GetAttr(p9.AttrMaskAll)
	if after.MTimeSeconds != 5 || after.ATimeSeconds != before.ATimeSeconds {
		t.Errorf("mtime-only change: mtime %d atime %d -> %d", after.MTimeSeconds, before.ATimeSeconds, after.ATimeSeconds)
	}
	// "now" times.
	must(t, f.SetAttr(p9.SetAttrMask{MTime: true}, p9.SetAttr{}))
	if fi, _ := os.Stat(p); time.Since(fi.ModTime()) > time.Minute {
		t.Errorf("mtime now: %v", fi.ModTime())
	}
	sub := walk(t, root, "sub")
	must(t, sub.SetAttr(p9.SetAttrMask{MTime: true, MTimeNotSystemTime: true, Permissions: true}, p9.SetAttr{MTimeSeconds: 77, Permissions: 0o700}))
	if fi, _ := os.Stat(filepath.Join(dir, "sub")); fi.ModTime().Unix() != 77 || fi.Mode().Perm() != 0o700 {
		t.Errorf("folder setattr: %v %v", fi.ModTime(), fi.Mode())
	}
	// A symlink's own times, never its target's.
	ftime, _ := os.Stat(p)
	must(t, walk(t, root, "l").SetAttr(p9.SetAttrMask{MTime: true, MTimeNotSystemTime: true}, p9.SetAttr{MTimeSeconds: 99}))
	if li, _ := os.Lstat(filepath.Join(dir, "l")); li.ModTime().Unix() != 99 {
		t.Errorf("symlink mtime: %v", li.ModTime())
	}
	if fi, _ := os.Stat(p); !fi.ModTime().Equal(ftime.ModTime()) {
		t.Errorf("setting a symlink's time changed its target's")
	}
	// chown is accepted and changes nothing on the host.
	st0, _ := os.Stat(p)
	must(t, f.SetAttr(p9.SetAttrMask{UID: true, GID: true}, p9.SetAttr{UID: 12345, GID: 12345}))
	st1, _ := os.Stat(p)
	if st0.Sys().(*syscall.Stat_t).Uid != st1.Sys().(*syscall.Stat_t).Uid {
		t.Error("chown changed the host owner")
	}
	// Through an open fid too (ftruncate, fchmod).
	if _, _, err := f.Open(p9.ReadWrite); err != nil {
		t.Fatal(err)
	}
	must(t, f.SetAttr(p9.SetAttrMask{Size: true, Permissions: true}, p9.SetAttr{Size: 1, Permissions: 0o600}))
	if fi, _ := os.Stat(p); fi.Size() != 1 || fi.Mode() != 0o600 {
		t.Errorf("setattr on an open file: %v %d", fi.Mode(), fi.Size())
	}
}

// processUmaskNow reads the process umask without changing it.
func processUmaskNow(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Umask:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Skip("no Umask in /proc/self/status")
	return ""
}

func TestModesAndUmask(t *testing.T) {
	before := processUmaskNow(t)
	dir := t.TempDir()
	root := direct(t, Options{Root: dir}, 0o027)
	f, _, _, err := root.Create("f", p9.WriteOnly, 0o4777, 0, 0)
	must(t, err)
	f.Close()
	_, err = root.Mkdir("d", 0o1777, 0, 0)
	must(t, err)
	mask := os.FileMode(0o027) | processUmask // the kernel applies the process's too
	for name, want := range map[string]os.FileMode{"f": 0o777 &^ mask, "d": os.ModeDir | 0o777&^mask} {
		if fi, _ := os.Stat(filepath.Join(dir, name)); fi.Mode() != want {
			t.Errorf("%s made %v, want %v", name, fi.Mode(), want)
		}
	}
	// Through the server, with the umask the agent started with, many attaches later.
	for i := 0; i < 3; i++ {
		r := client(t, Options{Root: dir})
		nf, _, _, err := walk(t, r).Create(fmt.Sprintf("g%d", i), p9.WriteOnly, 0o666, 0, 0)
		must(t, err)
		nf.Close()
		if fi, _ := os.Stat(filepath.Join(dir, fmt.Sprintf("g%d", i))); fi.Mode() != 0o666&^processUmask {
			t.Errorf("created %v with umask %v", fi.Mode(), processUmask)
		}
	}
	if after := processUmaskNow(t); after != before {
		t.Fatalf("serving changed the process umask from %s to %s", before, after)
	}
	if got := fmt.Sprintf("%04o", processUmask); got != before {
		t.Fatalf("processUmask %s, /proc says %s", got, before)
	}
}

func TestXattrsNotStored(t *testing.T) {
	dir := t.TempDir()
	n := direct(t, Options{Root: dir}, 0o022)
	if err := n.SetXattr("user.x", []byte("y"), 0); !errors.Is(err, linux.EOPNOTSUPP) {
		t.Fatalf("setxattr: %v", err)
	}
	if _, err := n.GetXattr("user.x"); !errors.Is(err, linux.ENODATA) {
		t.Fatalf("getxattr: %v", err)
	}
}

func TestMknodRefused(t *testing.T) {
	dir := t.TempDir()
	root := client(t, Options{Root: dir})
	if _, err := walk(t, root).Mknod("fifo", p9.ModeNamedPipe|0o644, 0, 0, 0, 0); !errors.Is(err, linux.EPERM) {
		t.Fatalf("mknod: %v", err)
	}
}

// skiffHome makes root/a/skiff (the denied folder) with a secret in it.
func skiffHome(t *testing.T, root string) string {
	t.Helper()
	home := filepath.Join(root, "a", "skiff")
	must(t, os.MkdirAll(filepath.Join(home, "machines"), 0o700))
	must(t, os.WriteFile(filepath.Join(home, "machines", "key"), []byte("SECRET"), 0o600))
	return home
}

func TestDeniedPathInsideShare(t *testing.T) {
	_, dir := layout(t)
	home := skiffHome(t, dir)
	must(t, os.Symlink("a/skiff", filepath.Join(dir, "alias")))
	must(t, os.WriteFile(filepath.Join(dir, "a", "neighbour"), []byte("fine"), 0o644))
	var logMu sync.Mutex
	var logged []string
	logf := func(f string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		logged = append(logged, fmt.Sprintf(f, args...))
	}
	before := snapshot(t, home)
	root := client(t, Options{Root: dir, Deny: []string{home}, Logf: logf})

	for _, names := range [][]string{{"a", "skiff"}, {"a", "skiff", "machines", "key"}, {"alias", "machines"}} {
		if _, _, err := root.Walk(names); err == nil {
			t.Errorf("walked to %v", names)
		}
	}
	if _, _, err := root.Walk([]string{"a", "skiff"}); !errors.Is(err, linux.EACCES) {
		t.Errorf("walk to the denied folder: %v, want EACCES", err)
	}
	if got := read(t, walk(t, root, "a", "neighbour")); got != "fine" {
		t.Errorf("a file beside the denied folder reads %q", got)
	}
	a := walk(t, root, "a")
	checks := map[string]func() error{
		"rename it":             func() error { return a.RenameAt("skiff", a, "moved") },
		"rename over it":        func() error { return a.RenameAt("neighbour", a, "skiff") },
		"rename its parent":     func() error { return walk(t, root).RenameAt("a", walk(t, root), "b") },
		"remove it":             func() error { return a.UnlinkAt("skiff", atRemoveDir) },
		"chmod its parent":      func() error { return a.SetAttr(p9.SetAttrMask{Permissions: true}, p9.SetAttr{Permissions: 0o777}) },
		"rename it via Trename": func() error { return walk(t, root, "a").Rename(walk(t, root), "a2") },
	}
	for what, check := range checks {
		if err := check(); !errors.Is(err, linux.EACCES) {
			t.Errorf("%s: %v, want EACCES", what, err)
		}
	}
	if after := snapshot(t, home); after != before {
		t.Fatalf("the denied folder changed:\n%s\n%s", before, after)
	}
	if _, err := os.Stat(filepath.Join(dir, "a", "neighbour")); err != nil {
		t.Fatal(err)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if len(logged) == 0 || !strings.Contains(logged[0], home) || strings.Contains(logged[0], "\n") {
		t.Fatalf("log lines: %q", logged)
	}
	seen := map[string]bool{}
	for _, l := range logged {
		if seen[l] {
			t.Fatalf("logged twice: %q", l)
		}
		seen[l] = true
	}
}

// A denied file reached by another name (a hard link) is still refused: identity, not
// names, decides.
func TestDeniedFileByHardLink(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	must(t, os.WriteFile(secret, []byte("SECRET"), 0o600))
	must(t, os.Link(secret, filepath.Join(dir, "other-name")))
	root := client(t, Options{Root: dir, Deny: []string{secret}})
	if _, _, err := root.Walk([]string{"other-name"}); !errors.Is(err, linux.EACCES) {
		t.Fatalf("walk to a hard link of a denied file: %v", err)
	}
}

func TestShareInsideDeniedPathRefused(t *testing.T) {
	_, dir := layout(t)
	home := skiffHome(t, dir)
	must(t, os.Symlink(filepath.Join(home, "machines"), filepath.Join(dir, "via-link")))
	for _, r := range []string{home, filepath.Join(home, "machines"), filepath.Join(dir, "via-link")} {
		a, b := net.Pipe()
		err := Serve(context.Background(), a, Options{Root: r, Deny: []string{home}})
		b.Close()
		if !errors.Is(err, ErrDenied) {
			t.Errorf("share %s: %v, want ErrDenied", r, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, home) || strings.Contains(msg, "\n") {
			t.Errorf("message: %q", msg)
		}
	}
	// A denied path that does not exist is nothing to guard.
	root := client(t, Options{Root: dir, Deny: []string{filepath.Join(dir, "nope")}})
	walk(t, root, "top")
}

// The guest lists a big folder in many Treaddir calls, each continuing at the offset of
// the last entry it got; every name must come exactly once.
func TestReaddirLargeFolder(t *testing.T) {
	dir := t.TempDir()
	const n = 3000
	for i := 0; i < n; i++ {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("file-with-a-longish-name-%05d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, ro := range []bool{false, true} {
		root := client(t, Options{Root: dir, ReadOnly: ro})
		d := walk(t, root)
		if _, _, err := d.Open(p9.ReadOnly); err != nil {
			t.Fatal(err)
		}
		seen := map[string]int{}
		var off uint64
		for calls := 0; ; calls++ {
			if calls > n {
				t.Fatal("readdir never ends")
			}
			ents, err := d.Readdir(off, 8192) // bytes, as the kernel asks
			if err != nil {
				t.Fatal(err)
			}
			if len(ents) == 0 {
				break
			}
			for _, e := range ents {
				seen[e.Name]++
			}
			off = ents[len(ents)-1].Offset
		}
		if len(seen) != n {
			t.Fatalf("read-only %v: listed %d distinct names of %d", ro, len(seen), n)
		}
		for name, k := range seen {
			if k != 1 {
				t.Fatalf("read-only %v: %s listed %d times", ro, name, k)
			}
		}
	}
}

// Entries carry the Linux DT_* type, as QEMU's 9p server sends it: the guest's getdents
// hands it to find, os.ReadDir and the like as d_type.
func TestReaddirEntryTypes(t *testing.T) {
	dir := t.TempDir()
	must(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "file"), nil, 0o644))
	must(t, os.Symlink("file", filepath.Join(dir, "link")))
	d := walk(t, client(t, Options{Root: dir}))
	if _, _, err := d.Open(p9.ReadOnly); err != nil {
		t.Fatal(err)
	}
	ents, err := d.Readdir(0, 8192)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]p9.QIDType{"sub": 4, "file": 8, "link": 10} // DT_DIR, DT_REG, DT_LNK
	for _, e := range ents {
		if w, ok := want[e.Name]; ok && e.Type != w {
			t.Errorf("%s: type %#x, want DT_* %d", e.Name, e.Type, w)
		}
		delete(want, e.Name)
	}
	if len(want) != 0 {
		t.Errorf("not listed: %v", want)
	}
}

// The p9 client sends Tlock without its fid, so this drives the server's nodes.
func TestLock(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "f"), nil, 0o644))
	root := direct(t, Options{Root: dir}, 0o022)
	a, b := walk(t, root, "f"), walk(t, root, "f")
	for _, f := range []p9.File{a, b} {
		if _, _, err := f.Open(p9.ReadWrite); err != nil {
			t.Fatal(err)
		}
	}
	if st, err := a.Lock(1, p9.WriteLock, 0, 0, 0, "g"); err != nil || st != p9.LockStatusOK {
		t.Fatalf("first lock: %v %v", st, err)
	}
	if st, _ := b.Lock(2, p9.WriteLock, 0, 0, 0, "g"); st != p9.LockStatusBlocked {
		t.Fatalf("second lock: %v, want blocked", st)
	}
	if st, err := a.Lock(1, p9.Unlock, 0, 0, 0, "g"); err != nil || st != p9.LockStatusOK {
		t.Fatalf("unlock: %v %v", st, err)
	}
	if st, _ := b.Lock(2, p9.WriteLock, 0, 0, 0, "g"); st != p9.LockStatusOK {
		t.Fatalf("lock after unlock: %v", st)
	}
	a.Close()
	b.Close()
}

// Folder handles are opened per fid and closed with it: a connection that ends leaves no
// descriptor behind.
func TestNoDescriptorLeak(t *testing.T) {
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd")
		}
		return len(ents)
	}
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "a", "b", "c"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "a", "b", "c", "f"), []byte("x"), 0o644))
	before := fds()
	for i := 0; i < 5; i++ {
		a, b := net.Pipe()
		done := make(chan struct{})
		go func() { Serve(context.Background(), a, Options{Root: dir}); close(done) }()
		c, err := p9.NewClient(b)
		must(t, err)
		root, err := c.Attach("")
		must(t, err)
		read(t, walk(t, root, "a", "b", "c", "f"))
		d := walk(t, root, "a", "b")
		if _, _, err := d.Open(p9.ReadOnly); err != nil {
			t.Fatal(err)
		}
		d.Readdir(0, 4096)
		hangUp(func() { c.Close() }, done)
	}
	if after := fds(); after > before {
		t.Fatalf("%d descriptors before, %d after five connections", before, after)
	}
}

// raw9P speaks 9P2000.L on c by hand, for the requests the p9 client cannot send.
type raw9P struct {
	t *testing.T
	c net.Conn
}

func (r raw9P) call(typ byte, tag uint16, body ...any) (byte, []byte) {
	r.t.Helper()
	var b []byte
	for _, v := range body {
		switch v := v.(type) {
		case uint32:
			b = binary.LittleEndian.AppendUint32(b, v)
		case uint16:
			b = binary.LittleEndian.AppendUint16(b, v)
		case string:
			b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
			b = append(b, v...)
		}
	}
	msg := binary.LittleEndian.AppendUint32(nil, uint32(7+len(b)))
	msg = append(msg, typ)
	msg = binary.LittleEndian.AppendUint16(msg, tag)
	// Two writes, split inside the header, so the connection's framing is exercised.
	r.c.Write(msg[:3])
	r.c.Write(append(msg[3:], b...))
	var hdr [7]byte
	if _, err := io.ReadFull(r.c, hdr[:]); err != nil {
		r.t.Fatal(err)
	}
	resp := make([]byte, binary.LittleEndian.Uint32(hdr[:4])-7)
	if _, err := io.ReadFull(r.c, resp); err != nil {
		r.t.Fatal(err)
	}
	if got := binary.LittleEndian.Uint16(hdr[5:]); got != tag {
		r.t.Fatalf("answer to tag %d came for tag %d", tag, got)
	}
	return hdr[4], resp
}

// The guest's kernel reads security.capability before it runs a file; the lookup must
// fail with ENODATA (no such attribute), not EINVAL, which stops the exec.
func TestXattrLookupFailsWithENODATA(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "prog"), []byte("#!/bin/sh\n"), 0o755))
	a, b := net.Pipe()
	done := make(chan struct{})
	go func() { Serve(context.Background(), a, Options{Root: dir}); close(done) }()
	defer hangUp(func() { b.Close() }, done)
	r := raw9P{t, b}
	const noFID = ^uint32(0)
	if typ, _ := r.call(100, 0xffff, uint32(65536), "9P2000.L"); typ != 101 {
		t.Fatalf("Tversion answered with type %d", typ)
	}
	if typ, _ := r.call(104, 1, uint32(1), noFID, "root", "", uint32(0)); typ != 105 {
		t.Fatalf("Tattach answered with type %d", typ)
	}
	if typ, _ := r.call(110, 2, uint32(1), uint32(2), uint16(1), "prog"); typ != 111 { // Twalk
		t.Fatalf("Twalk answered with type %d", typ)
	}
	for i, name := range []string{"security.capability", "user.x"} {
		typ, body := r.call(30, uint16(3+i), uint32(2), uint32(10+i), name)
		if typ != msgRlerror || linux.Errno(binary.LittleEndian.Uint32(body)) != linux.ENODATA {
			t.Fatalf("xattr lookup of %s: type %d errno %v, want Rlerror ENODATA", name, typ, body)
		}
	}
	// Other errors are left alone.
	if typ, body := r.call(110, 5, uint32(1), uint32(3), uint16(1), "missing"); typ != msgRlerror ||
		linux.Errno(binary.LittleEndian.Uint32(body)) != linux.ENOENT {
		t.Fatalf("walk to a missing file: type %d %v", typ, body)
	}
}

// A file the guest walked to is replaced by a rename (an editor's save) before it opens
// it: the open reads the new file, as a fresh lookup would, where an ESTALE would not be
// retried past a dentry the guest holds open.
func TestFileReplacedByRenameBeforeOpen(t *testing.T) {
	_, dir := layout(t)
	must(t, os.WriteFile(filepath.Join(dir, "saved"), []byte("old"), 0o644))
	root := client(t, Options{Root: dir})
	f := walk(t, root, "saved")
	must(t, os.WriteFile(filepath.Join(dir, "saved.tmp"), []byte("new, by rename"), 0o644))
	must(t, os.Rename(filepath.Join(dir, "saved.tmp"), filepath.Join(dir, "saved")))
	if got := read(t, f); got != "new, by rename" {
		t.Fatalf("the open after the save read %q", got)
	}
}

// A descriptor the guest held open across a save by rename reads the old file, and
// fails with ESTALE where it reads past that file's end: the guest's inode then carries
// the new file's size (its stat of the name asked the server), and the guest's kernel
// asks again for ever for an end answered with nothing. An end read of a file still
// under its name stays an ordinary end.
func TestReadPastEndOfReplacedFile(t *testing.T) {
	_, dir := layout(t)
	must(t, os.WriteFile(filepath.Join(dir, "held"), []byte("old"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "kept"), []byte("kept"), 0o644))
	root := client(t, Options{Root: dir})
	held, kept := walk(t, root, "held"), walk(t, root, "kept")
	if got := read(t, held); got != "old" {
		t.Fatalf("held read %q", got)
	}
	read(t, kept)
	buf := make([]byte, 64)
	if n, err := kept.ReadAt(buf, 4); n != 0 || err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("an end read of a file in place: %d, %v; want an ordinary end", n, err)
	}
	must(t, os.WriteFile(filepath.Join(dir, "held.tmp"), []byte("new, by rename"), 0o644))
	must(t, os.Rename(filepath.Join(dir, "held.tmp"), filepath.Join(dir, "held")))
	if n, _ := held.ReadAt(buf, 0); string(buf[:n]) != "old" {
		t.Fatalf("the held descriptor read %q after the save; want the old file", buf[:n])
	}
	if n, err := held.ReadAt(buf, 3); n != 0 || !errors.Is(err, linux.ESTALE) {
		t.Fatalf("a read past the replaced file's end: %d, %v; want ESTALE", n, err)
	}
}

// A fid opens once: a second open is refused and keeps no descriptor (the fuzz target
// opens fids again and again, and ran the test process out of descriptors).
func TestOpenTwice(t *testing.T) {
	_, root := layout(t)
	for _, names := range [][]string{{"top"}, {"d"}} {
		f := walk(t, direct(t, Options{Root: root}, 0o022), names...)
		if _, _, err := f.Open(p9.ReadOnly); err != nil {
			t.Fatalf("open %v: %v", names, err)
		}
		before := openFDs(t)
		for range 10 {
			if _, _, err := f.Open(p9.ReadOnly); !errors.Is(err, linux.EINVAL) {
				t.Fatalf("open %v again: %v, want EINVAL", names, err)
			}
		}
		if after := openFDs(t); after > before {
			t.Fatalf("open %v again: %d descriptors open, %d before", names, after, before)
		}
		f.Close()
	}
}

// openFDs counts the process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}
