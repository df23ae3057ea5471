package guestinit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMountedElsewhere(t *testing.T) {
	proc := t.TempDir()
	add := func(pid, ns, comm, mountinfo string) {
		d := filepath.Join(proc, pid)
		must := func(err error) {
			if err != nil {
				t.Fatal(err)
			}
		}
		must(os.MkdirAll(filepath.Join(d, "ns"), 0o755))
		must(os.Symlink(ns, filepath.Join(d, "ns", "mnt")))
		must(os.WriteFile(filepath.Join(d, "comm"), []byte(comm+"\n"), 0o644))
		must(os.WriteFile(filepath.Join(d, "mountinfo"), []byte(mountinfo), 0o644))
	}
	root := "22 1 254:0 / / rw - ext4 /dev/vda rw\n30 22 0:44 / /mnt/other rw - 9p other rw\n"
	add("1", "mnt:[4026531841]", "skiff-agent", root)
	// Same namespace as pid 1: not read again, whatever its file says.
	add("7", "mnt:[4026531841]", "sh", root+"31 22 0:46 / /never/read rw - 9p s rw\n")
	add("300", "mnt:[4026532200]", "sleep", "500 400 0:61 / / rw - overlay overlay rw\n"+
		`501 500 0:45 /sub /src\040dir rw - 9p s rw`+"\n")
	where, err := mountedElsewhere(proc, "0:45")
	if err != nil || !strings.Contains(where, "/src dir") || !strings.Contains(where, "300 (sleep)") {
		t.Fatalf("a share mounted in a container's namespace: %q, %v", where, err)
	}
	if where, err := mountedElsewhere(proc, "0:46"); where != "" || err != nil {
		t.Fatalf("a file system mounted only where a namespace already read says: %q, %v", where, err)
	}
}
