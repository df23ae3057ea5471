package fsevents

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-dev/skiff/forward"
)

// watchedInode is an inode some guest process has an inotify watch on.
type watchedInode struct{ dev, ino uint64 }

// procScanner reads the guest's processes for their mounts and inotify watches. Reading
// every process's descriptors is the costly part under emulation, so it remembers each
// process's mount namespace and inotify descriptors and looks at a process's descriptors
// again only when it is new or every fullEvery.
type procScanner struct {
	proc      string
	self      int
	fullEvery time.Duration
	pids      map[int]*procInfo
	lastFull  time.Time
	// Each namespace's mounts of interest, read again while it has processes new within
	// settleTime: a container's mounts are made by its first process.
	nsMounts map[string]map[uint64]map[string]bool
	nsNewest map[string]time.Time
	lastPID  string // the newest pid at the last refresh (/proc/loadavg's last field)
}

type procInfo struct {
	ns      string
	inotify []string // descriptor numbers of its inotify instances
	listed  bool
	seen    time.Time // when the scanner first saw it
}

// fullEvery is how often every process's descriptors are listed again (a process that
// already runs and starts watching with a new inotify instance is seen within it).
const fullEvery = 20 * time.Second

// settleTime is how long a namespace's mounts are read again after a new process in it.
const settleTime = 3 * time.Second

func newProcScanner(proc string, self int) *procScanner {
	return &procScanner{proc: proc, self: self, fullEvery: fullEvery, pids: map[int]*procInfo{},
		nsMounts: map[string]map[uint64]map[string]bool{}, nsNewest: map[string]time.Time{}}
}

// refresh brings the process list up to date: new processes get their namespace. While
// no process was made since the last refresh (the kernel's newest pid is the same), the
// list stands: one small read instead of a listing of /proc.
func (p *procScanner) refresh() {
	if b, err := os.ReadFile(filepath.Join(p.proc, "loadavg")); err == nil {
		f := strings.Fields(string(b))
		if len(f) == 5 && f[4] == p.lastPID {
			return
		} else if len(f) == 5 {
			p.lastPID = f[4]
		}
	}
	ents, _ := os.ReadDir(p.proc)
	alive := make(map[int]bool, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == p.self {
			continue
		}
		alive[pid] = true
		if p.pids[pid] == nil {
			ns, _ := os.Readlink(filepath.Join(p.proc, e.Name(), "ns", "mnt"))
			p.pids[pid] = &procInfo{ns: ns, seen: time.Now()}
			p.nsNewest[ns] = time.Now()
		}
	}
	live := map[string]bool{}
	for pid, pi := range p.pids {
		if !alive[pid] {
			delete(p.pids, pid)
		} else {
			live[pi.ns] = true
		}
	}
	for ns := range p.nsNewest {
		if !live[ns] {
			delete(p.nsNewest, ns)
			delete(p.nsMounts, ns)
		}
	}
}

// mountRoots reads each mount namespace's mounts of devs (one process's mountinfo per
// namespace): the folders of each device that are mounted somewhere (the binds of
// containers), relative to the device's root. They are where to look for watched inodes,
// and what to hold open on 9p.
func (p *procScanner) mountRoots(devs map[uint64]bool) map[uint64]map[string]bool {
	p.refresh()
	out := map[uint64]map[string]bool{}
	done := map[string]bool{}
	for pid, pi := range p.pids {
		if pi.ns == "" || done[pi.ns] {
			continue
		}
		done[pi.ns] = true
		mounts, ok := p.nsMounts[pi.ns]
		if !ok || time.Since(p.nsNewest[pi.ns]) < settleTime {
			b, _ := os.ReadFile(filepath.Join(p.proc, strconv.Itoa(pid), "mountinfo"))
			mounts = parseMountinfo(b)
			p.nsMounts[pi.ns] = mounts
		}
		for dev, roots := range mounts {
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

// watchedInodes reads the inotify watches of every process from its fdinfo ("inotify
// wd:1 ino:2a sdev:2c ..."), keeping those on devs.
func (p *procScanner) watchedInodes(devs map[uint64]bool) map[watchedInode]bool {
	p.refresh()
	full := time.Since(p.lastFull) >= p.fullEvery
	if full {
		p.lastFull = time.Now()
	}
	out := map[watchedInode]bool{}
	for pid, pi := range p.pids {
		dir := filepath.Join(p.proc, strconv.Itoa(pid))
		// A program opens its inotify instance a while after it starts (a watcher in a
		// container, under emulation, seconds later): its descriptors are listed at
		// every scan while it is young, not only at the first.
		if full || !pi.listed || time.Since(pi.seen) < fullEvery {
			pi.listed, pi.inotify = true, pi.inotify[:0]
			fds, _ := os.ReadDir(filepath.Join(dir, "fd"))
			for _, fd := range fds {
				if l, _ := os.Readlink(filepath.Join(dir, "fd", fd.Name())); l == "anon_inode:inotify" {
					pi.inotify = append(pi.inotify, fd.Name())
				}
			}
		}
		for _, fd := range pi.inotify {
			b, _ := os.ReadFile(filepath.Join(dir, "fdinfo", fd))
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
