package wslinit

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestUnpack(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: Unpack keeps owners and makes device nodes")
	}
	epoch := time.Unix(1735689600, 0)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./usr/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./usr/bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./usr/bin/su", Typeflag: tar.TypeReg, Mode: 0o4755, Size: 2},
		{Name: "./usr/bin/su2", Typeflag: tar.TypeLink, Linkname: "./usr/bin/su"},
		{Name: "./bin", Typeflag: tar.TypeSymlink, Linkname: "usr/bin"},
		{Name: "./home/", Typeflag: tar.TypeDir, Mode: 0o750, Uid: 1000, Gid: 1000},
		{Name: "./dev/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3},
		{Name: "./../escape", Typeflag: tar.TypeReg, Mode: 0o644},
	} {
		h.ModTime = epoch
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte("su"))
		}
	}
	tw.Close()
	dir := filepath.Join(t.TempDir(), "root")
	os.Mkdir(dir, 0o755)
	n, err := Unpack(&buf, dir)
	if err != nil || n != 10 {
		t.Fatalf("Unpack = %d, %v; want 10 entries", n, err)
	}
	var st unix.Stat_t
	check := func(p string, mode uint32, uid uint32) {
		t.Helper()
		if err := unix.Lstat(filepath.Join(dir, p), &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode&0o7777 != mode || st.Uid != uid {
			t.Errorf("%s: mode %o uid %d, want %o %d", p, st.Mode&0o7777, st.Uid, mode, uid)
		}
		if st.Mtim.Sec != epoch.Unix() {
			t.Errorf("%s: mtime %d, want %d", p, st.Mtim.Sec, epoch.Unix())
		}
	}
	check("usr/bin/su", 0o4755, 0)
	check("home", 0o750, 1000)
	check("usr", 0o755, 0) // its mtime set after its entries were written
	check("dev/null", 0o666, 0)
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
		t.Errorf("dev/null is not the char device 1:3")
	}
	var a, b unix.Stat_t
	unix.Stat(filepath.Join(dir, "usr/bin/su"), &a)
	unix.Stat(filepath.Join(dir, "usr/bin/su2"), &b)
	if a.Ino != b.Ino {
		t.Error("the hard link is a copy")
	}
	if l, _ := os.Readlink(filepath.Join(dir, "bin")); l != "usr/bin" {
		t.Errorf("bin -> %q", l)
	}
	if _, err := os.Stat(filepath.Join(dir, "escape")); err != nil {
		t.Errorf("a name with .. was not kept inside the root: %v", err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "escape")); err == nil {
		t.Error("a name with .. left the root")
	}
}
