//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"

	"github.com/skiff-dev/skiff/machine"
)

// benchFileEvents measures host file events (forward/fsevents): the latency from a host
// write to a watcher's callback in a container, and the host agent's idle cost with a
// watcher on 50 folders, side by side with the feature off.
//
// Latency is a round trip on the host's clock: the host creates events/c-N; a watcher in
// a container (this program, `fsevents-watch`, raw inotify) creates replies/c-N when it
// hears of it; the host sees the reply with fsnotify. The guest's write of the reply
// reaches the host at once (9p and virtiofs write through), so the figure is the event's
// way plus a small constant.
func benchFileEvents(args []string) error {
	fs := flag.NewFlagSet("fsevents", flag.ExitOnError)
	image, skiff := machineFlags(fs)
	types := fs.String("share-types", "9p,virtiofs", "share types to measure")
	n := fs.Int("changes", 200, "host changes timed per share type")
	dirs := fs.Int("dirs", 50, "folders the idle watcher watches")
	idle := fs.Duration("idle", 60*time.Second, "idle window (0: no idle measurement)")
	fs.Parse(args)
	b, cleanup, err := newBench(*skiff)
	if err != nil {
		return err
	}
	defer cleanup()
	for _, typ := range strings.Split(*types, ",") {
		if typ == "" {
			continue
		}
		lat, err := b.fileEventLatency(*image, typ, *n)
		if err != nil {
			return fmt.Errorf("%s: %w", typ, err)
		}
		fmt.Printf("%-9s host write -> watcher in a container -> reply on the host, %d changes: p50 %s, p95 %s, max %s\n",
			typ, len(lat), pct(lat, 50), pct(lat, 95), pct(lat, 100))
	}
	if *idle <= 0 {
		return nil
	}
	// The default home share (served by Skiff's 9p server: it holds Skiff's data) with a
	// watcher on a project of *dirs folders in it.
	home, err := os.UserHomeDir()
	if err != nil {
		return err
	}
	proj, err := os.MkdirTemp(home, ".skiff-bench-fsevents-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(proj)
	for i := range *dirs - 1 {
		os.MkdirAll(filepath.Join(proj, fmt.Sprintf("d%02d", i)), 0o755)
	}
	for _, off := range []bool{false, true} {
		r, err := b.fileEventsIdle(*image, proj, *idle, off)
		if err != nil {
			return err
		}
		fmt.Println(r)
	}
	return nil
}

func pct(d []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return 0
	}
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s)-1, i-1))].Round(time.Millisecond)
}

// watcherImage loads this program as the sink image and starts its watcher on the share.
func watcherContainer(ctx context.Context, d machine.Dir, name, bind string) error {
	if err := loadSink(ctx, d); err != nil {
		return err
	}
	_, err := docker(ctx, d, nil, "run", "-d", "--name", name, "-v", bind+":/w", sinkImage, "/skiff-bench", "fsevents-watch", "/w")
	return err
}

func (b *bench) fileEventLatency(image, typ string, n int) ([]time.Duration, error) {
	share, err := os.MkdirTemp("", "skb-fsev")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(share)
	// The container binds a folder of the share, as a project's compose file does: on 9p
	// the guest holds the folders below a bind open, which a whole-share bind does not get.
	proj := filepath.Join(share, "proj")
	for _, sub := range []string{"events", "replies"} {
		os.MkdirAll(filepath.Join(proj, sub), 0o755)
	}
	d, rm, err := b.startMachine("fsev-"+typ, image, "1G", "--share-type", typ, "--mount", share)
	if err != nil {
		return nil, err
	}
	defer rm()
	ctx := context.Background()
	if err := watcherContainer(ctx, d, "watch", proj); err != nil {
		return nil, err
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	defer w.Close()
	if err := w.Add(filepath.Join(proj, "replies")); err != nil {
		return nil, err
	}
	// Until the guest has read the watcher's watch (every 2 s), nothing comes back.
	if err := waitReply(w, "warm", 60*time.Second, func() error {
		return os.WriteFile(filepath.Join(proj, "events", "warm"), nil, 0o644)
	}); err != nil {
		return nil, err
	}
	var out []time.Duration
	for i := range n {
		name := "c-" + strconv.Itoa(i)
		start := time.Now()
		if err := waitReply(w, name, 10*time.Second, func() error {
			return os.WriteFile(filepath.Join(proj, "events", name), []byte("x"), 0o644)
		}); err != nil {
			return out, err
		}
		out = append(out, time.Since(start))
		time.Sleep(30 * time.Millisecond) // apart, so batches do not merge
	}
	return out, nil
}

// waitReply does change, again every second (a first change can land before the guest
// follows the folder), until replies/name appears.
func waitReply(w *fsnotify.Watcher, name string, timeout time.Duration, change func() error) error {
	deadline := time.After(timeout)
	for {
		if err := change(); err != nil {
			return err
		}
		again := time.After(time.Second)
		for wait := true; wait; {
			select {
			case ev := <-w.Events:
				if filepath.Base(ev.Name) == name && ev.Has(fsnotify.Create) {
					return nil
				}
			case err := <-w.Errors:
				return err
			case <-again:
				wait = false
			case <-deadline:
				return fmt.Errorf("no reply for %s within %s", name, timeout)
			}
		}
	}
}

// fileEventsIdle measures the host agent's CPU and RSS and the guest agent's CPU while a
// watcher watches proj (in the home share) and nothing changes.
func (b *bench) fileEventsIdle(image, proj string, idle time.Duration, off bool) (string, error) {
	name, initArgs := "fsev-idle-on", []string{"machine", "init", "fsev-idle-on"}
	if off {
		name, initArgs = "fsev-idle-off", []string{"machine", "init", "fsev-idle-off", "--no-file-events"}
	}
	d := machine.Home{Root: b.home}.Dir(name)
	if err := b.run(nil, append(initArgs, "--image", image, "--memory", "1G", "--disk-size", "4G")...); err != nil {
		return "", err
	}
	defer b.run(nil, "machine", "rm", "-f", name)
	if err := b.run(nil, "machine", "start", name); err != nil {
		return "", err
	}
	ctx := context.Background()
	if err := watcherContainer(ctx, d, "idle", proj); err != nil {
		return "", err
	}
	time.Sleep(15 * time.Second) // the watch is read, the host watches, start-up work passes
	pb, err := os.ReadFile(d.File(machine.FileAgentPID))
	if err != nil {
		return "", err
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pb)))
	guestCPU := func() (time.Duration, error) {
		cmd := b.command(nil, "machine", "ssh", name, "--", "cat /proc/1/stat")
		out, err := cmd.Output()
		if err != nil {
			return 0, err
		}
		s := string(out)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) < 13 {
			return 0, errors.New("the guest's /proc/1/stat is short")
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		return time.Duration(ut+st) * time.Second / 100, nil
	}
	g0, err := guestCPU()
	if err != nil {
		return "", err
	}
	c0, err := procCPU(pid)
	if err != nil {
		return "", err
	}
	t0 := time.Now()
	var peak int64
	for time.Since(t0) < idle {
		if rss, err := procRSS(pid); err == nil && rss > peak {
			peak = rss
		}
		time.Sleep(time.Second)
	}
	c1, _ := procCPU(pid)
	wall := time.Since(t0)
	g1, err := guestCPU()
	if err != nil {
		return "", err
	}
	watches := "off"
	if !off {
		cmd := b.command(nil, "machine", "inspect", name, "--format", "{{.Status.Agent.FileEvents.HostWatches}}")
		out, _ := cmd.Output()
		watches = strings.TrimSpace(string(out)) + " host watches"
	}
	return fmt.Sprintf("idle %s, home share, a watcher on %s (file events %s): host agent CPU %.3f%%, peak RSS %.1f MB; guest agent CPU %.3f%%",
		wall.Round(time.Second), filepath.Base(proj), watches, 100*(c1-c0).Seconds()/wall.Seconds(), float64(peak)/1e6,
		100*(g1-g0).Seconds()/wall.Seconds()), nil
}

// benchFileEventsWatch is the watcher in the container: raw inotify on every folder
// under DIR/events (if any; else DIR); each file event's name gets DIR/replies/NAME.
func benchFileEventsWatch(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: skiff-bench fsevents-watch DIR")
	}
	root, replies := filepath.Join(args[0], "events"), filepath.Join(args[0], "replies")
	if _, err := os.Stat(root); err != nil {
		root = args[0]
	}
	// On 9p the guest holds a new bind's folders open within 0.3 s; a watcher that looks
	// them up before keeps inodes nothing reaches (pin_linux.go). Dev servers under
	// emulation take longer than this to start; this one would not.
	time.Sleep(time.Second)
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		return err
	}
	const mask = unix.IN_CREATE | unix.IN_MODIFY | unix.IN_ATTRIB | unix.IN_DELETE | unix.IN_MOVED_TO | unix.IN_CLOSE_WRITE
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_, err = unix.InotifyAddWatch(fd, p, mask)
		}
		return err
	})
	if err != nil {
		return err
	}
	fmt.Println("READY")
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(fd, buf)
		if err != nil {
			return err
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
			off += unix.SizeofInotifyEvent + int(ev.Len)
			if name != "" && ev.Mask&unix.IN_ISDIR == 0 {
				if f, err := os.OpenFile(filepath.Join(replies, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); err == nil {
					f.Close()
				}
			}
		}
	}
}
