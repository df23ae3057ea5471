package fsevents

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/skiff-dev/skiff/forward/pathmap"
)

// HostShare is a share whose host folder the host end watches.
type HostShare struct {
	Tag       string
	HostPath  string
	GuestPath string
	Type      string // "9p", "9p-transport" or "virtiofs"
}

// HostOptions configure the host end.
type HostOptions struct {
	Shares []HostShare
	// Deny are host folders never watched, whatever the guest asks (Skiff's own data).
	Deny []string
	Logf func(string, ...any)
	// Quiet: a batch goes once nothing changed for this long (DefaultQuiet); MaxDelay: or
	// this long after its first change (DefaultMaxDelay), so a long burst still flows.
	Quiet    time.Duration
	MaxDelay time.Duration
	// MaxBatch is how many paths a batch carries before its directories are sent as
	// rescans instead (DefaultMaxBatch): a checkout of 10,000 files is a few lines.
	MaxBatch int
	// MaxWatches bounds the directories watched on the host (DefaultMaxWatches).
	MaxWatches int
}

// Defaults for HostOptions.
const (
	DefaultQuiet      = 20 * time.Millisecond
	DefaultMaxDelay   = 150 * time.Millisecond
	DefaultMaxBatch   = 512
	DefaultMaxWatches = 8192
)

// Host is the host end: it serves one stream at a time and counts its watches.
type Host struct {
	opts    HostOptions
	watches atomic.Int64
}

// NewHost makes the host end.
func NewHost(o HostOptions) *Host {
	if o.Quiet <= 0 {
		o.Quiet = DefaultQuiet
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = DefaultMaxDelay
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.MaxWatches <= 0 {
		o.MaxWatches = DefaultMaxWatches
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return &Host{opts: o}
}

// Watches is how many host directories are watched now.
func (h *Host) Watches() int { return int(h.watches.Load()) }

// Run keeps a stream to the guest, dialling again after it drops (sooner after a
// stream that lasted), until ctx ends.
func (h *Host) Run(ctx context.Context, dial func(context.Context) (net.Conn, error)) {
	wait := 2 * time.Second
	for ctx.Err() == nil {
		began := time.Now()
		conn, err := dial(ctx)
		if err == nil {
			err = h.Serve(ctx, conn)
		}
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > time.Minute {
			wait = 2 * time.Second
		}
		h.opts.Logf("file events: %v; connecting again in %s", err, wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Minute) // a guest without the service (an older image) is asked rarely
	}
}

// location is a watched host directory as a share sees it.
type location struct{ tag, rel string }

// session is one stream; everything in it belongs to Serve's goroutine.
type session struct {
	h       *Host
	w       *fsnotify.Watcher
	roots   map[string]string            // tag -> the share's real host root
	dirs    map[string]map[location]bool // real host dir -> where it sits in shares
	byShare map[string]map[string]string // tag -> rel -> real host dir
	pending map[Change]bool
	first   time.Time
	last    time.Time
	full    bool // MaxWatches reached; logged once
}

// Serve runs one stream until it ends or ctx does.
func (h *Host) Serve(ctx context.Context, conn net.Conn) error {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	w, err := fsnotify.NewBufferedWatcher(1024)
	if err != nil {
		return fmt.Errorf("file events: %w", err)
	}
	s := &session{h: h, w: w, roots: map[string]string{}, dirs: map[string]map[location]bool{},
		byShare: map[string]map[string]string{}, pending: map[Change]bool{}}
	defer func() {
		w.Close()
		h.watches.Add(-int64(len(s.dirs)))
	}()
	hello := Message{}
	for _, sh := range h.opts.Shares {
		root, err := filepath.EvalSymlinks(sh.HostPath)
		if err != nil {
			h.opts.Logf("file events: share %s: %v", sh.HostPath, err)
			continue
		}
		s.roots[sh.Tag] = root
		hello.Shares = append(hello.Shares, Share{Tag: sh.Tag, GuestPath: sh.GuestPath, Type: sh.Type})
	}
	enc := json.NewEncoder(conn)
	if err := send(conn, enc, hello); err != nil {
		return err
	}
	msgs, readErr := readMessages(ctx, json.NewDecoder(bufio.NewReader(conn)))
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-readErr:
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("the guest closed the stream")
			}
			return err
		case m := <-msgs:
			for _, wt := range m.Watches {
				s.watch(wt)
			}
		case ev, ok := <-w.Events:
			if !ok {
				return fmt.Errorf("file events: the watcher closed")
			}
			if s.event(ev) {
				timer.Reset(h.opts.Quiet)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return fmt.Errorf("file events: the watcher closed")
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Lost events: every watched directory is compared whole.
				for _, locs := range s.dirs {
					for l := range locs {
						s.add(Change{Share: l.tag, Path: l.rel, Rescan: true})
					}
				}
				timer.Reset(h.opts.Quiet)
			} else {
				h.opts.Logf("file events: %v", err)
			}
		case now := <-timer.C:
			if wait := s.due(now); wait > 0 {
				timer.Reset(wait)
				continue
			}
			if err := send(conn, enc, Message{Changes: s.batch()}); err != nil {
				return err
			}
		}
	}
}

func send(conn net.Conn, enc *json.Encoder, m Message) error {
	// A guest that stops reading ends the stream rather than the agent's loop.
	conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if err := enc.Encode(m); err != nil {
		return fmt.Errorf("file events: %w", err)
	}
	return nil
}

// watch makes a share's watched set the guest's.
func (s *session) watch(wt Watch) {
	root, ok := s.roots[wt.Share]
	if !ok {
		return
	}
	want := map[string]string{}
	for _, rel := range wt.Dirs {
		if real, err := s.resolve(root, rel); err != nil {
			s.h.opts.Logf("file events: share %s: not watching %q: %v", wt.Share, rel, err)
		} else {
			want[rel] = real
		}
	}
	had := s.byShare[wt.Share]
	for rel, real := range had {
		if want[rel] != real {
			s.unwatch(real, location{wt.Share, rel})
		}
	}
	for rel, real := range want {
		if had[rel] == real {
			continue
		}
		if !s.addWatch(real, location{wt.Share, rel}) {
			delete(want, rel)
		}
	}
	s.byShare[wt.Share] = want
}

// resolve is the real host directory of rel in a share, refused when it leaves the
// share's root (through a symlink) or reaches denied data.
func (s *session) resolve(root, rel string) (string, error) {
	p := root
	if rel != "" {
		if !filepath.IsLocal(filepath.FromSlash(rel)) {
			return "", fmt.Errorf("not a path inside the share")
		}
		p = filepath.Join(root, filepath.FromSlash(rel))
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", err
	}
	if !pathmap.Within(real, root) {
		return "", fmt.Errorf("it leaves the share")
	}
	for _, d := range s.h.opts.Deny {
		if dr, err := filepath.EvalSymlinks(d); err == nil && pathmap.Within(real, dr) {
			return "", fmt.Errorf("it holds Skiff's own data")
		}
	}
	return real, nil
}

func (s *session) addWatch(real string, l location) bool {
	if locs := s.dirs[real]; locs != nil {
		locs[l] = true
		return true
	}
	if len(s.dirs) >= s.h.opts.MaxWatches {
		if !s.full {
			s.h.opts.Logf("file events: %d host directories watched, the most allowed; the guest watches more", len(s.dirs))
			s.full = true
		}
		return false
	}
	if err := s.w.Add(real); err != nil {
		s.h.opts.Logf("file events: watch %s: %v", real, err)
		return false
	}
	s.dirs[real] = map[location]bool{l: true}
	s.h.watches.Add(1)
	return true
}

func (s *session) unwatch(real string, l location) {
	locs := s.dirs[real]
	if locs == nil {
		return
	}
	delete(locs, l)
	if len(locs) == 0 {
		s.w.Remove(real) // gone already when the directory was deleted
		delete(s.dirs, real)
		s.h.watches.Add(-1)
		s.full = false
	}
}

// event records a host change; it reports whether one was recorded.
func (s *session) event(ev fsnotify.Event) bool {
	added := false
	for l := range s.dirs[filepath.Dir(ev.Name)] {
		s.add(Change{Share: l.tag, Path: path.Join(l.rel, filepath.Base(ev.Name))})
		added = true
	}
	// A watched directory itself deleted or moved away: its watch is gone or now
	// names the wrong place, so it goes; the guest's next watch set says what is left.
	if locs := s.dirs[ev.Name]; locs != nil && ev.Has(fsnotify.Remove|fsnotify.Rename) {
		for l := range locs {
			s.add(Change{Share: l.tag, Path: l.rel})
			s.unwatch(ev.Name, l)
			delete(s.byShare[l.tag], l.rel)
		}
		added = true
	}
	return added
}

func (s *session) add(c Change) {
	now := time.Now()
	if len(s.pending) == 0 {
		s.first = now
	}
	s.last = now
	s.pending[c] = true
}

// due is how long the pending batch should still wait; 0 when it goes now.
func (s *session) due(now time.Time) time.Duration {
	if len(s.pending) == 0 {
		return time.Hour
	}
	quiet := s.last.Add(s.h.opts.Quiet).Sub(now)
	latest := s.first.Add(s.h.opts.MaxDelay).Sub(now)
	if quiet <= 0 || latest <= 0 {
		return 0
	}
	return min(quiet, latest)
}

// batch takes the pending changes, turned into rescans of their directories when there
// are too many to send one by one.
func (s *session) batch() []Change {
	out := make([]Change, 0, len(s.pending))
	if len(s.pending) > s.h.opts.MaxBatch {
		dirs := map[Change]bool{}
		for c := range s.pending {
			d := c
			if !c.Rescan {
				d = Change{Share: c.Share, Path: parent(c.Path), Rescan: true}
			}
			dirs[d] = true
		}
		s.pending = dirs
	}
	for c := range s.pending {
		out = append(out, c)
	}
	clear(s.pending)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Share != out[j].Share {
			return out[i].Share < out[j].Share
		}
		return out[i].Path < out[j].Path
	})
	return out
}

// parent is the share-relative directory holding p ("" for the root's entries).
func parent(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}
