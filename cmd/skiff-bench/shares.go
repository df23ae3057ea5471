package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// sftpServer is OpenSSH's SFTP server on the host (Debian: openssh-sftp-server), what
// Lima's reverse-sshfs runs when it is installed.
const sftpServer = "/usr/lib/openssh/sftp-server"

// statFiles is how many files each stat measurement walks (-files).
var statFiles = 10000

// benchShares measures, inside the guest, sequential write and read MB/s and the time to
// stat 10,000 files on a Skiff share against sshfs of the same host folder in the same VM,
// alternating. One machine per Skiff share type: virtio-9p, the Go 9p server over the
// transport, and virtiofs (virtiofsd; SKIFF_VIRTIOFSD_ARGS tries its other options).
func benchShares(args []string) error {
	fs := flag.NewFlagSet("shares", flag.ExitOnError)
	image, skiff := machineFlags(fs)
	sizeMB := fs.Int("size", 128, "MiB per sequential read or write")
	rounds := fs.Int("rounds", 3, "rounds per file system")
	types := fs.String("types", "9p,9p-transport,virtiofs", "Skiff share types to measure, one machine each")
	fs.IntVar(&statFiles, "files", statFiles, "files each stat measurement walks")
	fs.Parse(args)
	if _, err := os.Stat(sftpServer); err != nil {
		return fmt.Errorf("the sshfs peer needs the host's SFTP server (apt-get install openssh-sftp-server): %w", err)
	}
	b, cleanup, err := newBench(*skiff)
	if err != nil {
		return err
	}
	defer cleanup()
	// The shared folders live outside the bench's Skiff home: Skiff's 9p server refuses to
	// share its own data, and a share it refused would leave the guest writing to the
	// empty mount point on its own disk.
	shares, err := os.MkdirTemp("", "skb-shares")
	if err != nil {
		return err
	}
	defer os.RemoveAll(shares)
	var tables []string
	for _, typ := range strings.Split(*types, ",") {
		host := filepath.Join(shares, typ)
		if err := os.MkdirAll(host, 0o755); err != nil {
			return err
		}
		pm, rm, err := b.startPeerMachine("shares-"+strings.ReplaceAll(typ, "-", ""), *image, "2G", map[string]string{}, "--mount", host+":/mnt/skiff", "--share-type", typ)
		if err != nil {
			return err
		}
		t, err := compareShares(context.Background(), pm, host, typ, int64(*sizeMB)<<20, *rounds)
		rm()
		if err != nil {
			return fmt.Errorf("%s: %w", typ, err)
		}
		tables = append(tables, t)
	}
	fmt.Printf("\nin the guest, %d MiB sequential files and %d files stat'ed, median of %d, each pair on the same VM:\n%s",
		*sizeMB, statFiles, *rounds, strings.Join(tables, ""))
	return nil
}

type fsResult struct {
	writeMBs, readMBs, statSec float64
	// listSec is the directory read alone (names and types, no stat) of the same folder,
	// from cold caches: statSec - listSec is what the per-file lookups and stats cost.
	listSec float64
	// msgs counts the 9P requests of the timed stat walk by type, for 9P mounts.
	msgs map[string]int
}

// breakdown says where one stat walk's time went: the directory read, the per-file
// lookups and stats, and for 9P the requests each file took and the time of one.
func (x fsResult) breakdown() string {
	per := (x.statSec - x.listSec) / float64(statFiles)
	s := fmt.Sprintf("list %.2fs + %.0fus/file", x.listSec, per*1e6)
	if len(x.msgs) == 0 {
		return s
	}
	var names []string
	total := 0
	for k, n := range x.msgs {
		names = append(names, k)
		total += n
	}
	sort.Strings(names)
	var parts []string
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%s %.2f", k, float64(x.msgs[k])/float64(statFiles)))
	}
	return fmt.Sprintf("%s; 9p/file: %s = %.2f requests, %.0fus each", s, strings.Join(parts, " "),
		float64(total)/float64(statFiles), x.statSec/float64(total)*1e6)
}

// sshfsPeers are the sshfs mounts each share is measured against. sshfs' defaults cache
// attributes and names for 20 s (its dir_cache) and the kernel's FUSE entries and
// attributes for 1 s: a guest would read files the host had changed as they were, which
// Skiff's shares must not (machine/e2e's coherence check). "sshfs-nocache" turns both off,
// the peer that would pass the same check.
var sshfsPeers = []struct{ name, guest, opts string }{
	{"sshfs", "/mnt/sshfs", ""},
	{"sshfs-nocache", "/mnt/sshfs-nocache", "dir_cache=no,entry_timeout=0,attr_timeout=0,negative_timeout=0"},
}

// compareShares runs the rounds on one machine whose share of host sits at /mnt/skiff,
// with sshfs of the same folder beside it (sshfsPeers).
func compareShares(ctx context.Context, pm *peerMachine, host, typ string, size int64, rounds int) (string, error) {
	c, err := pm.ssh(ctx)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if out, err := guestRun(c, "grep ' /mnt/skiff ' /proc/mounts"); err != nil {
		return "", fmt.Errorf("the guest has no %s share at /mnt/skiff (see the machine's log): %v %s", typ, err, out)
	}
	mounts := []struct{ name, guest string }{{typ, "/mnt/skiff"}}
	for _, p := range sshfsPeers {
		stop, err := reverseSSHFS(ctx, c, host, p.guest, p.opts)
		if err != nil {
			return "", fmt.Errorf("%s: %w", p.name, err)
		}
		defer stop()
		mounts = append(mounts, struct{ name, guest string }{p.name, p.guest})
	}
	res := map[string][]fsResult{}
	for r := 0; r < rounds; r++ {
		for _, m := range mounts {
			x, err := measureShare(c, host, m.guest, fmt.Sprintf("%s-%d", m.name, r), size)
			if err != nil {
				return "", fmt.Errorf("%s: %w", m.name, err)
			}
			res[m.name] = append(res[m.name], x)
			fmt.Printf("round %d %-13s write %7.1f MB/s  read %7.1f MB/s  stat %6.2fs (%s)\n", r, m.name, x.writeMBs, x.readMBs, x.statSec, x.breakdown())
		}
	}
	med := func(xs []fsResult, f func(fsResult) float64) float64 {
		v := make([]float64, len(xs))
		for i, x := range xs {
			v[i] = f(x)
		}
		sort.Float64s(v)
		return v[len(v)/2]
	}
	type medians struct{ w, r, s float64 }
	// The breakdown shown is the median stat round's.
	at := func(xs []fsResult, v float64) fsResult {
		for _, x := range xs {
			if x.statSec == v {
				return x
			}
		}
		return fsResult{}
	}
	var t strings.Builder
	m := map[string]medians{}
	for _, mt := range mounts {
		xs := res[mt.name]
		x := medians{med(xs, func(x fsResult) float64 { return x.writeMBs }), med(xs, func(x fsResult) float64 { return x.readMBs }),
			med(xs, func(x fsResult) float64 { return x.statSec })}
		m[mt.name] = x
		fmt.Fprintf(&t, "  %-13s write %7.1f MB/s  read %7.1f MB/s  stat %6.2fs (%s)\n", mt.name, x.w, x.r, x.s, at(xs, x.s).breakdown())
	}
	s := m[typ]
	for _, p := range sshfsPeers {
		o := m[p.name]
		fmt.Fprintf(&t, "  ratio %s/%s: write %.2fx  read %.2fx  stat %.2fx faster (goal >= 2x)\n", typ, p.name, s.w/o.w, s.r/o.r, o.s/s.s)
	}
	return t.String(), nil
}

// reverseSSHFS mounts host at guest the way Lima's reverse-sshfs does: sshfs runs in the
// guest in passive mode and speaks SFTP over the SSH session's stdio to the host's
// sftp-server, so the guest needs no way in to the host.
// opts are sshfs -o options, if any.
func reverseSSHFS(ctx context.Context, c *ssh.Client, host, guest, opts string) (func(), error) {
	sess, err := c.NewSession()
	if err != nil {
		return nil, err
	}
	srv := exec.CommandContext(ctx, sftpServer)
	toSrv, err := srv.StdinPipe()
	if err != nil {
		return nil, err
	}
	fromSrv, err := srv.StdoutPipe()
	if err != nil {
		return nil, err
	}
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		return nil, err
	}
	sess.Stdin, sess.Stdout, sess.Stderr = fromSrv, toSrv, os.Stderr
	if opts != "" {
		opts = "," + opts
	}
	if err := sess.Start(fmt.Sprintf("mkdir -p %s && exec sshfs -f -o passive%s :%s %s", guest, opts, host, guest)); err != nil {
		srv.Process.Kill()
		return nil, err
	}
	stop := func() {
		guestRun(c, "fusermount3 -u "+guest)
		sess.Close()
		srv.Process.Kill()
		srv.Wait()
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if out, _ := guestRun(c, "grep -c ' "+guest+" fuse.sshfs ' /proc/mounts"); strings.TrimSpace(out) == "1" {
			return stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("sshfs did not mount %s within a minute", guest)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// guestUpload writes data to an executable file at path in the guest.
func guestUpload(c *ssh.Client, data []byte, path string) error {
	sess, err := c.NewSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	sess.Stdin = bytes.NewReader(data)
	if out, err := sess.CombinedOutput(fmt.Sprintf("cat > %s && chmod 755 %s", path, path)); err != nil {
		return fmt.Errorf("upload %s: %v: %s", path, err, out)
	}
	return nil
}

// guestRun runs a shell command in the guest and returns its stdout.
func guestRun(c *ssh.Client, cmd string) (string, error) {
	sess, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer sess.Close()
	var out, errb strings.Builder
	sess.Stdout, sess.Stderr = &out, &errb
	if err := sess.Run(cmd); err != nil {
		return out.String(), fmt.Errorf("guest %q: %v: %s", cmd, err, errb.String())
	}
	return out.String(), nil
}

// timedGuest runs setup, then cmd, in the guest and returns how long cmd took by the
// guest's clock, and cmd's stdout and stderr.
func timedGuest(c *ssh.Client, setup, cmd string) (time.Duration, string, error) {
	out, err := guestRun(c, fmt.Sprintf("%s; t0=$(date +%%s%%N); %s 2>&1; t1=$(date +%%s%%N); echo; echo elapsed $((t1-t0))", setup, cmd))
	if err != nil {
		return 0, out, err
	}
	i := strings.LastIndex(out, "elapsed ")
	if i < 0 {
		return 0, out, fmt.Errorf("no timing in %q", out)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(out[i+len("elapsed "):]), 10, 64)
	return time.Duration(ns), out[:i], err
}

// dropCaches makes the guest forget cached pages, dentries and inodes, so each read and
// stat goes to the file server rather than to memory.
const dropCaches = "sync; echo 3 > /proc/sys/vm/drop_caches"

// measureShare writes, reads and stats fresh files (new names every round, so no cache of
// either file system has seen them) on the share mounted at guest.
func measureShare(c *ssh.Client, host, guest, tag string, size int64) (fsResult, error) {
	var r fsResult
	mb := float64(size) / (1 << 20)
	// Write, including the flush to the host.
	w := "w-" + tag
	el, out, err := timedGuest(c, dropCaches, fmt.Sprintf("dd if=/dev/zero of=%s/%s bs=1M count=%d conv=fsync status=none", guest, w, size>>20))
	if err != nil {
		return r, fmt.Errorf("write: %v: %s", err, out)
	}
	if st, err := os.Stat(filepath.Join(host, w)); err != nil || st.Size() != size {
		return r, fmt.Errorf("write: the host sees %v, %v; want %d bytes", st, err, size)
	}
	os.Remove(filepath.Join(host, w))
	r.writeMBs = mb / el.Seconds()

	// Read a file the host wrote.
	rd := "r-" + tag
	if err := writeHostFile(filepath.Join(host, rd), size); err != nil {
		return r, err
	}
	defer os.Remove(filepath.Join(host, rd))
	el, out, err = timedGuest(c, dropCaches, fmt.Sprintf("dd if=%s/%s of=/dev/null bs=1M", guest, rd))
	if err != nil {
		return r, fmt.Errorf("read: %v: %s", err, out)
	}
	if !strings.HasPrefix(strings.TrimSpace(lastLine(out)), strconv.FormatInt(size, 10)+" bytes") {
		return r, fmt.Errorf("read: dd says %q; want %d bytes", lastLine(out), size)
	}
	r.readMBs = mb / el.Seconds()

	// Stat every file of a folder the host filled.
	dir := "s-" + tag
	if err := os.Mkdir(filepath.Join(host, dir), 0o755); err != nil {
		return r, err
	}
	defer os.RemoveAll(filepath.Join(host, dir))
	for i := 0; i < statFiles; i++ {
		if err := os.WriteFile(filepath.Join(host, dir, fmt.Sprintf("f%05d", i)), []byte("x"), 0o644); err != nil {
			return r, err
		}
	}
	// The directory read alone, from cold caches: ls -f neither sorts nor stats. Some
	// servers list . and .., some do not.
	el, out, err = timedGuest(c, dropCaches, fmt.Sprintf("ls -f %s/%s | grep -cvx '[.]\\|[.][.]'", guest, dir))
	if err != nil {
		return r, fmt.Errorf("list: %v: %s", err, out)
	}
	if n := strings.TrimSpace(out); n != strconv.Itoa(statFiles) {
		return r, fmt.Errorf("list: the guest saw %q entries; want %d", n, statFiles)
	}
	r.listSec = el.Seconds()
	nine := strings.HasPrefix(tag, "9p")
	setup := dropCaches
	if nine {
		setup += "; " + trace9pOn
	}
	el, out, err = timedGuest(c, setup, fmt.Sprintf("find %s/%s -type f -printf '%%s\\n' | grep -c '^1$'", guest, dir))
	if err != nil {
		return r, fmt.Errorf("stat: %v: %s", err, out)
	}
	if n := strings.TrimSpace(out); n != strconv.Itoa(statFiles) {
		return r, fmt.Errorf("stat: the guest saw %q files of size 1; want %d", n, statFiles)
	}
	r.statSec = el.Seconds()
	if nine {
		hist, err := guestRun(c, trace9pOff)
		if err != nil {
			fmt.Printf("no 9P request counts (the guest kernel's 9p trace events and hist triggers): %v\n", err)
		} else {
			r.msgs = parse9pHist(hist)
		}
	}
	return r, nil
}

// The guest kernel's 9p:9p_client_req trace event with a hist trigger counts the requests
// of the timed walk by type, in the kernel, without a trace buffer to overflow.
const (
	trace9pEvent = "/sys/kernel/tracing/events/9p/9p_client_req"
	trace9pOn    = "{ mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing; } && echo 'hist:keys=type' > " + trace9pEvent + "/trigger"
	trace9pOff   = "cat " + trace9pEvent + "/hist && echo '!hist:keys=type' > " + trace9pEvent + "/trigger"
)

// ninePNames are the 9P2000.L requests a stat walk sends, by type number.
var ninePNames = map[int]string{8: "statfs", 12: "lopen", 24: "getattr", 30: "xattrwalk", 40: "readdir", 110: "walk", 116: "read", 120: "clunk"}

// parse9pHist reads a hist trigger's lines: "{ type:        110 } hitcount:      10000".
func parse9pHist(hist string) map[string]int {
	m := map[string]int{}
	for _, line := range strings.Split(hist, "\n") {
		var typ, n int
		if _, err := fmt.Sscanf(strings.TrimSpace(line), "{ type: %d } hitcount: %d", &typ, &n); err != nil {
			continue
		}
		name, ok := ninePNames[typ]
		if !ok {
			name = "T" + strconv.Itoa(typ)
		}
		m[name] += n
	}
	return m
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// writeHostFile fills path with size bytes that no file system could compress or dedupe.
func writeHostFile(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	var x uint32 = 2463534242
	for i := range buf {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		buf[i] = byte(x)
	}
	for left := size; left > 0; left -= int64(len(buf)) {
		buf[0]++ // every MiB differs
		if _, err := f.Write(buf[:min(left, int64(len(buf)))]); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}
