package fsevents

import (
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// On 9p mounted without metadata caching (Skiff's cache=mmap), the guest kernel makes a
// new inode at every lookup of a directory no dentry holds. A watcher's inotify watch
// pins the inode it looked up, not its dentry, so the next lookup of the same folder
// (the agent's, or a container's own write into it) reaches another inode, and the
// watcher hears nothing: not of the host's changes, not even of the guest's own, below
// the folder a container binds (the bind holds its root). So the agent holds the
// directories below every bind of a 9p share open (O_PATH, up to maxPins): lookups then
// find the held dentry, and the watchers that start after it share the agent's inodes.
// Watchers that looked a folder up before the agent held it keep an inode nothing can
// reach again.

// maxPins bounds the directories held open for all 9p shares together.
const maxPins = 16384

// pinner holds directories of 9p shares open.
type pinner struct {
	fds   map[string]int  // guest path -> O_PATH descriptor
	roots map[string]bool // bind roots (guest paths) whose trees are held
}

func (p *pinner) close() {
	for _, fd := range p.fds {
		unix.Close(fd)
	}
	clear(p.fds)
	clear(p.roots)
}

// pinned reports whether a guest path is held.
func (p *pinner) pinned(guestPath string) bool { _, ok := p.fds[guestPath]; return ok }

// pin holds one directory open.
func (p *pinner) pin(guestPath string) bool {
	if p.pinned(guestPath) {
		return true
	}
	if len(p.fds) >= maxPins {
		return false
	}
	fd, err := unix.Open(guestPath, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	p.fds[guestPath] = fd
	return true
}

// unpin lets go of guestPath and everything held below it.
func (p *pinner) unpin(guestPath string) {
	for q, fd := range p.fds {
		if q == guestPath || strings.HasPrefix(q, guestPath+"/") {
			unix.Close(fd)
			delete(p.fds, q)
		}
	}
}

// sync holds the trees below the binds of sh's 9p mount (share-relative roots) and
// lets go of those no longer bound.
func (p *pinner) sync(sh *gshare, roots map[string]bool) {
	want := map[string]bool{}
	for r := range roots {
		r = strings.Trim(r, "/")
		if r == "" || !filepath.IsLocal(r) {
			continue // the whole share: the mount holds its root; the rest is too much
		}
		want[filepath.Join(sh.mount, filepath.FromSlash(r))] = true
	}
	for r := range p.roots {
		if strings.HasPrefix(r, sh.mount+"/") && !want[r] {
			delete(p.roots, r)
			p.unpin(r)
		}
	}
	for r := range want {
		if !p.roots[r] {
			p.roots[r] = true
			p.pinTree(r)
		}
	}
}

// pinTree holds root's directories, breadth first, within maxPins.
func (p *pinner) pinTree(root string) {
	queue := []string{root}
	for len(queue) > 0 && len(p.fds) < maxPins {
		dir := queue[0]
		queue = queue[1:]
		ents, err := readDir(dir)
		if err != nil {
			continue
		}
		for name, e := range ents {
			if e.isDir(dir, name) {
				sub := path.Join(dir, name)
				if p.pin(sub) {
					queue = append(queue, sub)
				}
			}
		}
	}
}
