package guestinit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMountedElsewhere(t *testing.T) {
	proc := t.TempDir()
	add := func(pid, ns, comm, mountinfo, cgroup string) {
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
		must(os.WriteFile(filepath.Join(d, "cgroup"), []byte(cgroup), 0o644))
	}
	root := "22 1 254:0 / / rw - ext4 /dev/vda rw\n30 22 0:44 / /mnt/other rw - 9p other rw\n"
	add("1", "mnt:[4026531841]", "skiff-agent", root, "0::/\n")
	// Same namespace as pid 1: not read again, whatever its file says.
	add("7", "mnt:[4026531841]", "sh", root+"31 22 0:46 / /never/read rw - 9p s rw\n", "0::/\n")
	add("300", "mnt:[4026532200]", "sleep", "500 400 0:61 / / rw - overlay overlay rw\n"+
		`501 500 0:45 /sub /src\040dir rw - 9p s rw`+"\n", "0::/docker/"+strings.Repeat("ab", 32)+"\n")
	h, err := mountedElsewhere(proc, "0:45")
	if err != nil || h == nil || *h != (holder{point: "/src dir", pid: "300", comm: "sleep", container: strings.Repeat("ab", 32)}) {
		t.Fatalf("a share mounted in a container's namespace: %+v, %v", h, err)
	}
	if h, err := mountedElsewhere(proc, "0:46"); h != nil || err != nil {
		t.Fatalf("a file system mounted only where a namespace already read says: %+v, %v", h, err)
	}
}

func TestContainerOfCgroup(t *testing.T) {
	id := strings.Repeat("0123456789abcdef", 4)
	for cg, want := range map[string]string{
		"0::/docker/" + id + "\n":                             id,
		"0::/system.slice/docker-" + id + ".scope\n":          id,
		"0::/machine.slice/libpod-" + id + ".scope/container": id,
		"0::/libpod_parent/libpod-" + id + "\n":               id,
		"12:pids:/docker/" + id + "\n0::/\n":                  "",
		"0::/init.scope\n":                                    "",
		"0::/docker/" + id[:63] + "\n":                        "",
		"0::/docker/x" + id + "\n":                            "",
		"":                                                    "",
	} {
		if got := containerOfCgroup(cg); got != want {
			t.Errorf("%q: got %q, want %q", cg, got, want)
		}
	}
}
