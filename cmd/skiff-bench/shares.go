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

// The files each stat measurement walks.
const statFiles = 10000

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
	fs.Parse(args)
	if _, err := os.Stat(sftpServer); err != nil {
		return fmt.Errorf("the sshfs peer needs the host's SFTP server (apt-get install openssh-sftp-server): %w", err)
	}
	b, cleanup, err := newBench(*skiff)
	if err != nil {
		return err
	}
	defer cleanup()
	var tables []string
	for _, typ := range strings.Split(*types, ",") {
		host := filepath.Join(b.home, "share-"+typ)
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

type fsResult struct{ writeMBs, readMBs, statSec float64 }

// compareShares runs the rounds on one machine whose share of host sits at /mnt/skiff,
// with sshfs of the same folder at /mnt/sshfs.
func compareShares(ctx context.Context, pm *peerMachine, host, typ string, size int64, rounds int) (string, error) {
	c, err := pm.ssh(ctx)
	if err != nil {
		return "", err
	}
	defer c.Close()
	stop, err := reverseSSHFS(ctx, c, host, "/mnt/sshfs")
	if err != nil {
		return "", err
	}
	defer stop()
	mounts := []struct{ name, guest string }{{typ, "/mnt/skiff"}, {"sshfs", "/mnt/sshfs"}}
	res := map[string][]fsResult{}
	for r := 0; r < rounds; r++ {
		for _, m := range mounts {
			x, err := measureShare(c, host, m.guest, fmt.Sprintf("%s-%d", m.name, r), size)
			if err != nil {
				return "", fmt.Errorf("%s: %w", m.name, err)
			}
			res[m.name] = append(res[m.name], x)
			fmt.Printf("round %d %-13s write %7.1f MB/s  read %7.1f MB/s  stat %6.2fs\n", r, m.name, x.writeMBs, x.readMBs, x.statSec)
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
	s, p := res[typ], res["sshfs"]
	sw, pw := med(s, func(x fsResult) float64 { return x.writeMBs }), med(p, func(x fsResult) float64 { return x.writeMBs })
	sr, pr := med(s, func(x fsResult) float64 { return x.readMBs }), med(p, func(x fsResult) float64 { return x.readMBs })
	ss, ps := med(s, func(x fsResult) float64 { return x.statSec }), med(p, func(x fsResult) float64 { return x.statSec })
	var t strings.Builder
	fmt.Fprintf(&t, "  %-13s write %7.1f MB/s  read %7.1f MB/s  stat %6.2fs\n", typ, sw, sr, ss)
	fmt.Fprintf(&t, "  %-13s write %7.1f MB/s  read %7.1f MB/s  stat %6.2fs\n", "sshfs", pw, pr, ps)
	fmt.Fprintf(&t, "  ratio %s/sshfs: write %.2fx  read %.2fx  stat %.2fx faster (goal >= 2x)\n", typ, sw/pw, sr/pr, ps/ss)
	return t.String(), nil
}

// reverseSSHFS mounts host at guest the way Lima's reverse-sshfs does: sshfs runs in the
// guest in passive mode and speaks SFTP over the SSH session's stdio to the host's
// sftp-server, so the guest needs no way in to the host.
func reverseSSHFS(ctx context.Context, c *ssh.Client, host, guest string) (func(), error) {
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
	if err := sess.Start(fmt.Sprintf("mkdir -p %s && exec sshfs -f -o passive :%s %s", guest, host, guest)); err != nil {
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
	el, out, err = timedGuest(c, dropCaches, fmt.Sprintf("find %s/%s -type f -printf '%%s\\n' | grep -c '^1$'", guest, dir))
	if err != nil {
		return r, fmt.Errorf("stat: %v: %s", err, out)
	}
	if n := strings.TrimSpace(out); n != strconv.Itoa(statFiles) {
		return r, fmt.Errorf("stat: the guest saw %q files of size 1; want %d", n, statFiles)
	}
	r.statSec = el.Seconds()
	return r, nil
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
