package fsevents

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/skiff-dev/skiff/forward"
)

// watchedInode is an inode some guest process has an inotify watch on.
type watchedInode struct{ dev, ino uint64 }

// mountRoots reads each mount namespace's mounts of devs (one process's mountinfo per
// namespace): the folders of each device that are mounted somewhere (the binds of
// containers), relative to the device's root. They are where to look for watched inodes,
// and what to hold open on 9p.
func mountRoots(proc string, devs map[uint64]bool) map[uint64]map[string]bool {
	out := map[uint64]map[string]bool{}
	pids, _ := os.ReadDir(proc)
	namespaces := map[string]bool{}
	for _, p := range pids {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		dir := filepath.Join(proc, p.Name())
		ns, err := os.Readlink(filepath.Join(dir, "ns", "mnt"))
		if err != nil || namespaces[ns] {
			continue
		}
		namespaces[ns] = true
		b, _ := os.ReadFile(filepath.Join(dir, "mountinfo"))
		for dev, roots := range parseMountinfo(b) {
			if !devs[dev] {
				continue
			}
			if out[dev] == nil {
				out[dev] = map[string]bool{}
			}
			for r := range roots {
				out[dev][r] = true
			}
		}
	}
	return out
}

// watchedInodes reads every process's inotify watches from its fdinfo ("inotify wd:1
// ino:2a sdev:2c ..."), keeping those on devs; self (the agent) is left out.
func watchedInodes(proc string, self int, devs map[uint64]bool) map[watchedInode]bool {
	out := map[watchedInode]bool{}
	pids, _ := os.ReadDir(proc)
	for _, p := range pids {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == self {
			continue
		}
		dir := filepath.Join(proc, p.Name())
		fds, _ := os.ReadDir(filepath.Join(dir, "fd"))
		for _, fd := range fds {
			if l, _ := os.Readlink(filepath.Join(dir, "fd", fd.Name())); l != "anon_inode:inotify" {
				continue
			}
			b, _ := os.ReadFile(filepath.Join(dir, "fdinfo", fd.Name()))
			for _, w := range parseFdinfo(b) {
				if devs[w.dev] {
					out[w] = true
				}
			}
		}
	}
	return out
}

// parseFdinfo reads the watches of one inotify instance's fdinfo.
func parseFdinfo(b []byte) []watchedInode {
	var out []watchedInode
	for _, line := range bytes.Split(b, []byte("\n")) {
		rest, ok := bytes.CutPrefix(line, []byte("inotify wd:"))
		if !ok {
			continue
		}
		var ino, sdev uint64
		var okIno, okDev bool
		for _, f := range strings.Fields(string(rest)) {
			var err error
			if v, ok := strings.CutPrefix(f, "ino:"); ok {
				ino, err = strconv.ParseUint(v, 16, 64)
				okIno = err == nil
			} else if v, ok := strings.CutPrefix(f, "sdev:"); ok {
				sdev, err = strconv.ParseUint(v, 16, 64)
				okDev = err == nil
			}
		}
		if okIno && okDev {
			// The kernel prints its own dev_t (major<<20 | minor); stat's is encoded apart.
			out = append(out, watchedInode{dev: unix.Mkdev(uint32(sdev>>20), uint32(sdev&0xfffff)), ino: ino})
		}
	}
	return out
}

// parseMountinfo maps each device in a mountinfo to the folders of it that are mounted
// (field 4, octal-escaped), relative to the device's root.
func parseMountinfo(b []byte) map[uint64]map[string]bool {
	out := map[uint64]map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		maj, min, ok := strings.Cut(f[2], ":")
		if !ok {
			continue
		}
		ma, err1 := strconv.ParseUint(maj, 10, 32)
		mi, err2 := strconv.ParseUint(min, 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		dev := unix.Mkdev(uint32(ma), uint32(mi))
		if out[dev] == nil {
			out[dev] = map[string]bool{}
		}
		out[dev][forward.UnescapeMountinfo(f[3])] = true
	}
	return out
}
