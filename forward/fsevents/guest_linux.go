package fsevents

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// GuestOptions configure the guest end.
type GuestOptions struct {
	Logf func(string, ...any)
	// Mounted reports whether a guest path is one of the guest's share mounts: the only
	// places the host may have the guest raise events in.
	Mounted func(guestPath string) bool
	// ScanEvery is how often /proc is read for the watches guest processes hold
	// (DefaultScanEvery): a watcher that starts hears of host changes after at most this.
	ScanEvery time.Duration
	// MountEvery is how often new binds of 9p shares are looked for (DefaultMountEvery).
	MountEvery time.Duration
	// Budget bounds the events raised for one batch (DefaultBudget); the directories of
	// the rest get one IN_ATTRIB each, which tells watchers to look again.
	Budget int
	Proc   string // "/proc"
	Self   int    // the pid left out of scans: the agent's own (its watches are its own)
}

// Defaults for GuestOptions.
const (
	DefaultScanEvery  = 2 * time.Second
	DefaultMountEvery = 300 * time.Millisecond
	DefaultBudget     = 2000
	// maxVisits bounds the directories listed to find where watched inodes are.
	maxVisits = 4096
	// maxUnwatchedDepth is how far below a bind's root the search goes through folders
	// nobody watches before it finds a watched one.
	maxUnwatchedDepth = 3
)

// Guest is the guest end, served as the transport's Service.
type Guest struct {
	opts GuestOptions
}

// NewGuest makes the guest end.
func NewGuest(o GuestOptions) *Guest {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.ScanEvery <= 0 {
		o.ScanEvery = DefaultScanEvery
	}
	if o.MountEvery <= 0 {
		o.MountEvery = DefaultMountEvery
	}
	if o.Budget <= 0 {
		o.Budget = DefaultBudget
	}
	if o.Proc == "" {
		o.Proc = "/proc"
	}
	if o.Self == 0 {
		o.Self = os.Getpid()
	}
	return &Guest{opts: o}
}

// gshare is one followed share in the guest.
type gshare struct {
	tag, mount string
	dev        uint64
	v9p        bool             // needs its directories held (pin_linux.go)
	dirs       map[string]*gdir // rel -> directory the guest follows
	where      map[uint64]string
	seen       map[uint64]bool // the watched inodes of the last scan
	sent       []string
}

// gdir is a followed directory: what the guest knows of its entries, and its own watch.
type gdir struct {
	share   *gshare
	rel     string
	wd      int
	only    map[string]bool // watched files of an unwatched directory; nil: every entry
	entries map[string]attrs
}

// grain is how finely the share's mount keeps the times the guest sets.
func (sh *gshare) grain() timeGrain {
	if sh.v9p {
		return grainSeconds
	}
	return grainNanos
}

func (d *gdir) path(name string) string {
	return filepath.Join(d.share.mount, filepath.FromSlash(d.rel), name)
}

type guestSession struct {
	g      *Guest
	enc    *json.Encoder
	conn   net.Conn
	fd     int // the agent's own inotify: what guest processes change themselves
	shares map[string]*gshare
	byWD   map[int]*gdir
	procs  *procScanner
	roots  map[uint64]map[string]bool // the shares' bind roots, by device
	pins   pinner
	budget int
	nudge  map[*gdir]bool
	own    map[*gdir]map[string]bool   // names this batch raised events on (drain leaves them)
	listed map[*gdir]map[string]dirent // this batch's listings of virtiofs folders
}

// Serve runs one stream from the host (a transport.Handler).
func (g *Guest) Serve(ctx context.Context, _ string, conn net.Conn) {
	defer conn.Close()
	if err := g.serve(ctx, conn); err != nil && ctx.Err() == nil {
		g.opts.Logf("file events: %v", err)
	}
}

func (g *Guest) serve(ctx context.Context, conn net.Conn) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dec := json.NewDecoder(bufio.NewReader(conn))
	var hello Message
	if err := dec.Decode(&hello); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("inotify: %w", err)
	}
	s := &guestSession{g: g, procs: newProcScanner(g.opts.Proc, g.opts.Self), enc: json.NewEncoder(conn), conn: conn, fd: fd,
		shares: map[string]*gshare{}, byWD: map[int]*gdir{},
		pins: pinner{fds: map[string]int{}, roots: map[string]bool{}}}
	defer func() {
		unix.Close(fd)
		s.pins.close()
	}()
	for _, sh := range hello.Shares {
		if g.opts.Mounted != nil && !g.opts.Mounted(sh.GuestPath) {
			g.opts.Logf("file events: %s is not a share mount here; left out", sh.GuestPath)
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(sh.GuestPath, &st); err != nil {
			g.opts.Logf("file events: share %s: %v", sh.GuestPath, err)
			continue
		}
		s.shares[sh.Tag] = &gshare{tag: sh.Tag, mount: sh.GuestPath, dev: st.Dev, v9p: strings.HasPrefix(sh.Type, "9p"),
			dirs: map[string]*gdir{}, where: map[uint64]string{}}
	}
	msgs, readErr := readMessages(ctx, dec)
	var news <-chan struct{}
	if w, err := newExecWatch(); err != nil {
		g.opts.Logf("file events: %v; scanning on timers alone", err)
	} else {
		defer w.Close()
		news = w.C()
	}
	p := pace{scanEvery: g.opts.ScanEvery, news: news != nil, lastExec: time.Now()}
	scanT := time.NewTimer(g.opts.ScanEvery)
	defer scanT.Stop()
	slow := false
	var mt *time.Ticker
	var mounts <-chan time.Time // only with 9p shares (pin_linux.go)
	startMounts := func() {
		if mt == nil && len(s.devs(true)) > 0 {
			mt = time.NewTicker(g.opts.MountEvery)
			mounts = mt.C
		}
	}
	defer func() {
		if mt != nil {
			mt.Stop()
		}
	}()
	startMounts()
	s.scanMounts()
	if err := s.scan(); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			return err
		case <-news:
			p.lastExec = time.Now()
			startMounts()
			if slow {
				slow = false
				scanT.Reset(g.opts.ScanEvery)
			}
		case <-mounts:
			s.scanMounts()
			if !p.mountsDue(time.Now()) {
				mt.Stop()
				mt, mounts = nil, nil
			}
		case <-scanT.C:
			if err := s.scan(); err != nil {
				return err
			}
			d := p.scanAfter(time.Now(), s.watching())
			slow = d > g.opts.ScanEvery
			scanT.Reset(d)
		case m := <-msgs:
			s.drain()
			s.apply(m.Changes)
		}
	}
}

// pace is when the guest looks again. Without exec news the scans run on their timers.
// With them an idle guest stays quiet: the mounts are read only for settleTime after a
// program started (a container's binds are made before its program runs), and the
// watches every ScanEvery only while a program started within fullEvery or a process
// watches share inodes; otherwise every fullEvery, the bound there has always been for a
// running process that opens a new inotify instance.
type pace struct {
	scanEvery time.Duration
	news      bool
	lastExec  time.Time
}

func (p pace) mountsDue(now time.Time) bool {
	return !p.news || now.Sub(p.lastExec) < settleTime
}

func (p pace) scanAfter(now time.Time, watching bool) time.Duration {
	if !p.news || watching || now.Sub(p.lastExec) < fullEvery {
		return p.scanEvery
	}
	return max(fullEvery, p.scanEvery)
}

// watching says whether a guest process watched share inodes at the last scan.
func (s *guestSession) watching() bool {
	for _, sh := range s.shares {
		if len(sh.seen) > 0 {
			return true
		}
	}
	return false
}

// scanMounts holds the trees below new 9p binds open (pin_linux.go), soon enough for
// the watchers a container starts.
func (s *guestSession) scanMounts() {
	devs := s.devs(true)
	if len(devs) == 0 {
		return
	}
	s.roots = s.procs.mountRoots(devs)
	for _, sh := range s.shares {
		if sh.v9p {
			s.pins.sync(sh, s.roots[sh.dev])
		}
	}
}

// devs are the devices of the followed shares (only the 9p ones with only9p).
func (s *guestSession) devs(only9p bool) map[uint64]bool {
	devs := map[uint64]bool{}
	for _, sh := range s.shares {
		if sh.v9p || !only9p {
			devs[sh.dev] = true
		}
	}
	return devs
}

// scan reads which share inodes guest processes watch, follows those directories, and
// tells the host when a share's set changed.
func (s *guestSession) scan() error {
	s.drain()
	devs := s.devs(false)
	if len(devs) == 0 {
		return nil
	}
	inodes := s.procs.watchedInodes(devs)
	var out []Watch
	for _, sh := range s.shares {
		seen := map[uint64]bool{}
		for w := range inodes {
			if w.dev == sh.dev {
				seen[w.ino] = true
			}
		}
		if mapsEqual(seen, sh.seen) {
			continue
		}
		sh.seen = seen
		if !sh.v9p {
			s.roots = s.procs.mountRoots(devs)
		}
		s.follow(sh, seen, s.roots[sh.dev])
		dirs := make([]string, 0, len(sh.dirs))
		for rel := range sh.dirs {
			dirs = append(dirs, rel)
		}
		sort.Strings(dirs)
		if !slices.Equal(dirs, sh.sent) {
			s.g.opts.Logf("file events: %s: guest processes watch %d folders (%d inodes)", sh.mount, len(dirs), len(seen))
			sh.sent = dirs
			out = append(out, Watch{Share: sh.tag, Dirs: dirs})
		}
	}
	if len(out) == 0 {
		return nil
	}
	s.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	return s.enc.Encode(Message{Watches: out})
}

func mapsEqual(a, b map[uint64]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// follow makes sh's followed directories those holding (or being) watched inodes.
func (s *guestSession) follow(sh *gshare, watched map[uint64]bool, roots map[string]bool) {
	missing := false
	for ino := range watched {
		if _, ok := sh.where[ino]; !ok {
			missing = true
		}
	}
	if missing {
		for ino, rel := range s.find(sh, watched, roots) {
			sh.where[ino] = rel
		}
	}
	// Directory watched: every entry. File watched: its directory, for its name only.
	want := map[string]map[string]bool{}
	all := map[string]bool{}
	for ino := range watched {
		rel, ok := sh.where[ino]
		if !ok {
			continue
		}
		if rel == "" || strings.HasSuffix(rel, "/") {
			d := strings.TrimSuffix(rel, "/")
			all[d] = true
			want[d] = nil
			continue
		}
		d := parent(rel)
		if all[d] {
			continue
		}
		if want[d] == nil {
			want[d] = map[string]bool{}
		}
		want[d][path.Base(rel)] = true
	}
	for rel, d := range sh.dirs {
		if _, ok := want[rel]; !ok {
			s.unfollow(d)
		}
	}
	for rel, only := range want {
		if all[rel] {
			only = nil
		}
		if d := sh.dirs[rel]; d != nil {
			d.only = only
			continue
		}
		s.followDir(sh, rel, only)
	}
}

// find looks for the watched inodes below the binds' roots, listing only directories:
// watched ones, and those on the way from a root to the first watched one. It returns
// each found inode's share path, a directory's ending in "/" ("/" itself for the root).
func (s *guestSession) find(sh *gshare, watched map[uint64]bool, roots map[string]bool) map[uint64]string {
	found := map[uint64]string{}
	type item struct {
		rel   string
		depth int // folders since the last watched one (or the root)
	}
	var queue []item
	for r := range roots {
		r = strings.Trim(r, "/")
		if r == "" || filepath.IsLocal(r) {
			queue = append(queue, item{rel: r})
		}
	}
	visits := 0
	done := map[string]bool{}
	for len(queue) > 0 && visits < maxVisits {
		it := queue[0]
		queue = queue[1:]
		if done[it.rel] {
			continue
		}
		done[it.rel] = true
		p := filepath.Join(sh.mount, filepath.FromSlash(it.rel))
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Dev != sh.dev {
			continue
		}
		if watched[st.Ino] {
			found[st.Ino] = it.rel + "/"
			it.depth = 0
		}
		visits++
		ents, err := readDir(p)
		if err != nil {
			continue
		}
		for name, e := range ents {
			rel := path.Join(it.rel, name)
			wanted := watched[e.ino] || it.depth < maxUnwatchedDepth && !anyWatchedAbove(found, it.rel)
			if !wanted {
				continue // not asked whether it is a folder: that can cost a stat
			}
			dir := e.isDir(p, name)
			if watched[e.ino] && !dir {
				found[e.ino] = rel
				continue
			}
			if dir {
				queue = append(queue, item{rel: rel, depth: it.depth + 1})
			}
		}
	}
	return found
}

// anyWatchedAbove reports whether rel or a folder above it was found watched: below a
// watched folder the search follows watched folders only (not into a node_modules).
func anyWatchedAbove(found map[uint64]string, rel string) bool {
	for _, f := range found {
		d := strings.TrimSuffix(f, "/")
		if strings.HasSuffix(f, "/") && (d == rel || d == "" || strings.HasPrefix(rel, d+"/")) {
			return true
		}
	}
	return false
}

const ownMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_MODIFY |
	unix.IN_ATTRIB | unix.IN_CLOSE_WRITE | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR

func (s *guestSession) followDir(sh *gshare, rel string, only map[string]bool) {
	d := &gdir{share: sh, rel: rel, only: only, entries: map[string]attrs{}}
	wd, err := unix.InotifyAddWatch(s.fd, d.path(""), ownMask)
	if err != nil {
		return
	}
	if old := s.byWD[wd]; old != nil {
		// The same directory under two names (a rename seen late): the new name wins.
		s.unfollow(old)
		wd, err = unix.InotifyAddWatch(s.fd, d.path(""), ownMask)
		if err != nil {
			return
		}
	}
	d.wd = wd
	s.snapshot(d)
	sh.dirs[rel] = d
	s.byWD[wd] = d
}

// snapshot records a directory's entries as listed (inode and type; no stat).
func (s *guestSession) snapshot(d *gdir) {
	ents, _ := readDir(d.path(""))
	clear(d.entries)
	for name, e := range ents {
		mode := uint32(0)
		if e.typ == unix.DT_DIR { // no stat per entry: this only picks a delete's placeholder
			mode = unix.S_IFDIR
		}
		d.entries[name] = attrs{ino: e.ino, mode: mode}
	}
}

func (s *guestSession) unfollow(d *gdir) {
	if s.byWD[d.wd] == d {
		unix.InotifyRmWatch(s.fd, uint32(d.wd))
		delete(s.byWD, d.wd)
	}
	delete(d.share.dirs, d.rel)
	d.share.seen = nil // the next scan looks again: a moved directory is found anew
	for ino, rel := range d.share.where {
		if strings.TrimSuffix(rel, "/") == d.rel {
			delete(d.share.where, ino)
		}
	}
}

// drain reads the agent's own watch: what guest processes changed, and what the agent's
// own operations did, is recorded as known, so the host's report of it raises nothing.
// A name the running batch raised events on keeps what the batch recorded: those
// events are the agent's own (queued before its operations returned), and a stat now
// could take in a host change not yet reported, which would then raise nothing.
func (s *guestSession) drain() {
	buf := make([]byte, 64<<10)
	changed := map[*gdir]map[string]bool{}
	for {
		n, err := unix.Read(s.fd, buf)
		if n <= 0 || err != nil {
			break
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			wd := int(int32(binary.NativeEndian.Uint32(buf[off:])))
			mask := binary.NativeEndian.Uint32(buf[off+4:])
			nameLen := int(binary.NativeEndian.Uint32(buf[off+12:]))
			name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+nameLen]), "\x00")
			off += unix.SizeofInotifyEvent + nameLen
			if mask&unix.IN_Q_OVERFLOW != 0 {
				for _, d := range s.byWD {
					s.snapshot(d)
				}
				continue
			}
			d := s.byWD[wd]
			if d == nil {
				continue
			}
			if mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_IGNORED) != 0 {
				s.unfollow(d)
				continue
			}
			if name == "" {
				continue
			}
			if changed[d] == nil {
				changed[d] = map[string]bool{}
			}
			changed[d][name] = true
		}
	}
	for d, names := range changed {
		for name := range names {
			if s.own[d][name] {
				continue
			}
			if a, ok, err := statEntry(d.path(name)); err == nil && ok {
				d.entries[name] = a
			} else if err == nil {
				delete(d.entries, name)
			}
		}
	}
}

// apply raises the guest events for a batch of host changes.
func (s *guestSession) apply(changes []Change) {
	s.budget = s.g.opts.Budget
	s.nudge = map[*gdir]bool{}
	s.listed = map[*gdir]map[string]dirent{}
	s.own = map[*gdir]map[string]bool{}
	defer func() {
		s.drain() // the events of this batch's own operations, all queued by now
		s.own = nil
	}()
	for _, c := range changes {
		sh := s.shares[c.Share]
		if sh == nil || c.Path != "" && !filepath.IsLocal(filepath.FromSlash(c.Path)) {
			continue
		}
		if c.Rescan {
			if d := sh.dirs[c.Path]; d != nil {
				s.rescan(d)
			}
			continue
		}
		if d := sh.dirs[c.Path]; d != nil {
			// A followed directory itself: gone from the host, it is followed no more.
			if _, ok, _ := statEntry(d.path("")); !ok {
				s.unfollow(d)
			}
		}
		if c.Path == "" {
			continue
		}
		if d := sh.dirs[parent(c.Path)]; d != nil {
			s.entry(d, path.Base(c.Path))
		}
	}
	for d := range s.nudge {
		if a, ok, err := statEntry(d.path("")); err == nil && ok {
			s.raise(d, "", func() error { return emitAttrib(d.path(""), a) })
		}
	}
}

// rescan compares a whole directory with what the guest knew of it.
func (s *guestSession) rescan(d *gdir) {
	ents, err := readDir(d.path(""))
	if err != nil {
		return
	}
	names := map[string]bool{}
	for n := range ents {
		names[n] = true
	}
	for n := range d.entries {
		names[n] = true
	}
	// Entries only listed before cannot be compared: one IN_ATTRIB on the directory
	// has watchers look again.
	s.nudge[d] = true
	for n := range names {
		e, had := d.entries[n]
		if cur, ok := ents[n]; ok && had && !e.full && cur.ino == e.ino {
			continue // listed before and now as the same inode: nothing to compare with
		}
		s.entry(d, n)
	}
}

// entry compares one name of a followed directory with what the guest knew and raises
// the events its change becomes.
func (s *guestSession) entry(d *gdir, name string) {
	if d.only != nil && !d.only[name] {
		return
	}
	p := d.path(name)
	cur, exists, err := statEntry(p)
	if err != nil {
		return
	}
	if exists && !d.share.v9p && !s.listedIn(d, name) {
		exists = false
	}
	prev, had := d.entries[name]
	switch {
	case !exists && !had:
	case !exists:
		delete(d.entries, name)
		s.pins.unpin(p) // a held dentry would keep the name taken in the guest
		s.raise(d, name, func() error { return emitDelete(d.path(""), name, prev.isDir()) })
	case !had:
		d.entries[name] = cur
		if cur.isDir() && (s.pins.pinned(d.path("")) || s.pins.roots[d.path("")]) {
			s.pins.pin(p) // before watchers hear of it and look it up
		}
		s.raise(d, name, func() error { return emitCreate(p, cur, d.share.grain()) })
	case prev.same(cur):
		d.entries[name] = cur
	default:
		d.entries[name] = cur
		if cur.mode&unix.S_IFMT == unix.S_IFREG && prev.ino == cur.ino {
			s.raise(d, name, func() error { return emitWrite(p, cur, d.share.grain()) })
		} else if cur.mode&unix.S_IFMT == unix.S_IFREG {
			// Replaced (an editor's save by rename): written, as far as watchers go.
			s.raise(d, name, func() error { return emitCreate(p, cur, d.share.grain()) })
		} else {
			s.raise(d, name, func() error { return emitAttrib(p, cur) })
		}
	}
}

// listedIn reports whether the host lists name in d. virtiofs keeps a name's dentry for
// its entry timeout (a second) after the host renamed it away, and a stat through it
// finds the inode, alive under its new name: the folder's listing is the host's word.
func (s *guestSession) listedIn(d *gdir, name string) bool {
	l, ok := s.listed[d]
	if !ok {
		l, _ = readDir(d.path(""))
		s.listed[d] = l
	}
	_, ok = l[name]
	return ok
}

// raise runs one event-raising operation within the batch's budget; past it, the
// directory is nudged once instead.
func (s *guestSession) raise(d *gdir, name string, op func() error) {
	if s.budget <= 0 && name != "" {
		s.nudge[d] = true
		return
	}
	s.budget--
	if name != "" {
		if s.own[d] == nil {
			s.own[d] = map[string]bool{}
		}
		s.own[d][name] = true
	}
	if err := op(); err != nil && !errors.Is(err, unix.EEXIST) {
		s.g.opts.Logf("file events: %s: %v", d.path(name), err)
	}
	// What the operation itself changed (the ctime; on 9p the mtime it may move to now)
	// is known, so the host's report of it raises nothing. A new size, inode or mode is
	// the host's, and its report is still to come: that keeps what the batch saw.
	if prev, ok := d.entries[name]; ok && name != "" {
		if a, ok, err := statEntry(d.path(name)); err == nil && ok && a.ino == prev.ino && a.size == prev.size && a.mode == prev.mode {
			d.entries[name] = a
		}
	}
}
