package fsevents

import (
	"testing"

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
