package fsevents

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseFdinfo(t *testing.T) {
	b := []byte("pos:\t0\nflags:\t02004000\nmnt_id:\t15\nino:\t1057\n" +
		"inotify wd:2 ino:131c1c9 sdev:1f mask:fce ignored_mask:0 fhandle-bytes:c fhandle-type:81 f_handle:c9c1310100000000625670c4\n" +
		"inotify wd:1 ino:e1 sdev:800001 mask:2 ignored_mask:0\n")
	got := parseFdinfo(b)
	want := []watchedInode{{dev: unix.Mkdev(0, 0x1f), ino: 0x131c1c9}, {dev: unix.Mkdev(8, 1), ino: 0xe1}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestParseMountinfo(t *testing.T) {
	b := []byte("40 29 0:31 / /mnt/share rw,relatime - 9p skiff0 rw,cache=0x5\n" +
		"75 67 0:31 /proj\\040x /app rw,relatime - 9p skiff0 rw\n" +
		"22 1 8:1 / / rw - ext4 /dev/sda1 rw\n")
	got := parseMountinfo(b)
	if r := got[unix.Mkdev(0, 31)]; len(r) != 2 || !r["/"] || !r["/proj x"] {
		t.Fatalf("share roots: %v", r)
	}
	if r := got[unix.Mkdev(8, 1)]; len(r) != 1 || !r["/"] {
		t.Fatalf("root: %v", r)
	}
}

// fakeProc is a /proc with processes made of the files the scanner reads.
func fakeProc(t *testing.T) string {
	proc := t.TempDir()
	for _, p := range []struct{ pid, ns, mountinfo string }{
		{"10", "mnt:[1]", "40 29 0:31 / /mnt/share rw - 9p skiff0 rw\n"},
		{"20", "mnt:[2]", "75 67 0:31 /proj /app rw - 9p skiff0 rw\n"},
	} {
		dir := filepath.Join(proc, p.pid)
		for _, d := range []string{"fd", "fdinfo", "ns"} {
			os.MkdirAll(filepath.Join(dir, d), 0o755)
		}
		os.Symlink(p.ns, filepath.Join(dir, "ns", "mnt"))
		os.WriteFile(filepath.Join(dir, "mountinfo"), []byte(p.mountinfo), 0o644)
		os.Symlink("/dev/null", filepath.Join(dir, "fd", "0"))
	}
	return proc
}

func addInotify(t *testing.T, proc, pid, fd string, inos ...string) {
	os.Symlink("anon_inode:inotify", filepath.Join(proc, pid, "fd", fd))
	var b strings.Builder
	for i, ino := range inos {
		fmt.Fprintf(&b, "inotify wd:%d ino:%s sdev:1f mask:fce ignored_mask:0\n", i+1, ino)
	}
	os.WriteFile(filepath.Join(proc, pid, "fdinfo", fd), []byte(b.String()), 0o644)
}

func TestProcScanner(t *testing.T) {
	proc := fakeProc(t)
	share := unix.Mkdev(0, 31)
	devs := map[uint64]bool{share: true}
	addInotify(t, proc, "20", "4", "a1")
	p := newProcScanner(proc, 10)
	if got := p.watchedInodes(devs); len(got) != 1 || !got[watchedInode{share, 0xa1}] {
		t.Fatalf("watches: %v", got)
	}
	if roots := p.mountRoots(devs)[share]; !roots["/proj"] || roots["/"] {
		t.Fatalf("roots (the agent's own namespace, pid 10, left out): %v", roots)
	}
	// A watch added to a known inotify instance is read at the next scan.
	addInotify(t, proc, "20", "4", "a1", "b2")
	if got := p.watchedInodes(devs); len(got) != 2 {
		t.Fatalf("a new watch on a known instance: %v", got)
	}
	// A new instance in a young process is read at the next scan (a watcher opens it a
	// while after it starts)...
	addInotify(t, proc, "20", "5", "c3")
	if got := p.watchedInodes(devs); len(got) != 3 {
		t.Fatalf("a young process's new instance: %v", got)
	}
	// ...in an older one it waits for the next full listing.
	p.pids[20].seen = time.Now().Add(-fullEvery)
	addInotify(t, proc, "20", "6", "d4")
	if got := p.watchedInodes(devs); len(got) != 3 {
		t.Fatalf("an older process's descriptors were listed again before fullEvery: %v", got)
	}
	p.lastFull = time.Time{}
	if got := p.watchedInodes(devs); len(got) != 4 {
		t.Fatalf("after a full listing: %v", got)
	}
	// A process gone is forgotten.
	os.RemoveAll(filepath.Join(proc, "20"))
	if got := p.watchedInodes(devs); len(got) != 0 || len(p.pids) != 0 {
		t.Fatalf("a gone process: %v %v", got, p.pids)
	}
	// While the kernel's newest pid stays, /proc is not listed again.
	os.WriteFile(filepath.Join(proc, "loadavg"), []byte("0.00 0.00 0.00 1/90 20\n"), 0o644)
	p.refresh()
	os.Rename(fakeProc(t), filepath.Join(proc, "new"))
	os.Rename(filepath.Join(proc, "new", "20"), filepath.Join(proc, "30"))
	if p.refresh(); p.pids[30] != nil {
		t.Fatal("/proc was listed again with no new process")
	}
	os.WriteFile(filepath.Join(proc, "loadavg"), []byte("0.00 0.00 0.00 1/91 30\n"), 0o644)
	if p.refresh(); p.pids[30] == nil {
		t.Fatal("a new process was not seen")
	}
}
