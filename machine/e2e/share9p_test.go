//go:build linux

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/skiff-dev/skiff/machine/machinetest"
)

// TestShareOverTransport mounts host folders through the Go 9p server over the
// authenticated host<->guest transport (trans=fd), the way Hyper-V guests do and QEMU's
// do by default (no --share-type).
func TestShareOverTransport(t *testing.T) {
	e := machinetest.New(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "hello"), []byte("over the go 9p server\n"), 0o644)
	e.Must("machine", "init", "--no-home-share", "--cpus", "2", "--memory", "1G", "--disk-size", "4G",
		"--mount", dir+":/mnt/s9", "--mount", dir+":/mnt/s9ro:ro")
	e.Must("machine", "start")
	out := e.Must("machine", "ssh", "--", "grep ' 9p ' /proc/mounts; cat /mnt/s9/hello; echo from-guest > /mnt/s9/back")
	if !strings.Contains(out, "trans=fd") || !strings.Contains(out, "over the go 9p server") {
		t.Fatalf("share not mounted over the transport:\n%s", out)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "back")); strings.TrimSpace(string(b)) != "from-guest" {
		t.Fatalf("the host did not see the guest's write: %q", b)
	}
	checkCoherent(t, e, "default", dir, "/mnt/s9")
	checkHeld(t, e, "default", dir, "/mnt/s9", heldStale)
	// What the host agent's 9p server does to host files, as a guest's tools ask.
	e.Must("machine", "ssh", "--", strings.Join([]string{
		"set -e", "cd /mnt/s9",
		"echo moved > r1", "mv r1 r2", "mkdir sub", "mv r2 sub/r3", // rename, across folders
		"ln sub/r3 hard",                                       // link
		"echo x > gone", "rm gone", "mkdir sub2", "rmdir sub2", // unlink
		"chmod 600 sub/r3", "touch -m -d @981173106 sub/r3", // chmod, utimes
		"chown 12345:12345 hard", // accepted, records nothing
		"cp /bin/true t", "./t",  // exec from the share
		"umask 0; echo m > wide", // the guest asks 0666, the host umask applies
	}, "\n"))
	st, err := os.Stat(filepath.Join(dir, "sub", "r3"))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "sub", "r3")); string(b) != "moved\n" || st.Mode().Perm() != 0o600 || st.ModTime().Unix() != 981173106 {
		t.Fatalf("sub/r3: %q %v %v", b, st.Mode(), st.ModTime())
	}
	if hard, err := os.Stat(filepath.Join(dir, "hard")); err != nil || !os.SameFile(st, hard) {
		t.Fatalf("hard is not a link of sub/r3: %v", err)
	}
	for _, gone := range []string{"r1", "r2", "gone", "sub2"} {
		if _, err := os.Lstat(filepath.Join(dir, gone)); err == nil {
			t.Errorf("%s is still on the host", gone)
		}
	}
	umask := syscall.Umask(0o022) // this test's process; the agent's is its own
	syscall.Umask(umask)
	if fi, err := os.Stat(filepath.Join(dir, "wide")); err != nil || fi.Mode().Perm() != 0o666&^os.FileMode(umask) {
		t.Errorf("a file the guest made 0666: %v (umask %03o)", fi.Mode(), umask)
	}

	if out, err := e.Run("machine", "ssh", "--", "touch /mnt/s9ro/x"); err == nil {
		t.Fatalf("wrote through a read-only share: %s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
		t.Fatal("a file appeared through the read-only share")
	}
	// Read-only holds at the server, whatever the guest's root does to its mount.
	out, _ = e.Run("machine", "ssh", "--", "mount -o remount,rw /mnt/s9ro && grep -c ' /mnt/s9ro 9p rw,' /proc/mounts; "+
		": > /mnt/s9ro/hello; truncate -s 0 /mnt/s9ro/back; rm -f /mnt/s9ro/t; mv /mnt/s9ro/hard /mnt/s9ro/h2")
	if !strings.HasPrefix(strings.TrimSpace(out), "1") {
		t.Fatalf("could not remount the read-only share rw in the guest, so the server's refusals went untested:\n%s", out)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "hello")); string(b) != "over the go 9p server\n" {
		t.Fatalf("hello through a read-only share is now %q", b)
	}
	for _, p := range []string{"back", "t", "hard"} {
		if fi, err := os.Stat(filepath.Join(dir, p)); err != nil || fi.Size() == 0 {
			t.Fatalf("%s changed through a read-only share: %v", p, err)
		}
	}

	// A share still mounted in another mount namespace (where a container's -v holds it)
	// keeps the machine from suspending: its stream would die with the host agent, and the
	// namespace would read "connection reset" after the resume.
	// Stop only once the holder is sleep: unshare execs it after leaving the namespace, and
	// a loaded host once stopped the machine in between (the holder was still "unshare").
	e.Must("machine", "ssh", "--", "unshare -m --propagation private sleep 100000 >/dev/null 2>&1 & "+
		"for i in $(seq 100); do pgrep -x sleep >/dev/null && break; sleep 0.1; done")
	out = e.Must("machine", "stop")
	if !strings.Contains(out, "Could not suspend") || !strings.Contains(out, "(sleep)") {
		t.Fatalf("stop with a share mounted in another namespace: %s", out)
	}
	if v := inspectBoot(t, e); v.SavedState != nil {
		t.Fatalf("stop with a share mounted in another namespace left a saved state: %+v", v.SavedState)
	}
}

// TestShareKeepsSkiffData shares Skiff's own home with the VM, as a home share does: the
// share goes through Skiff's 9p server instead of QEMU's, which refuses that data, and
// the engine proxy refuses to bind-mount it; a share without Skiff's data stays on QEMU's
// 9p.
func TestShareKeepsSkiffData(t *testing.T) {
	e := machinetest.New(t)
	plain := t.TempDir()
	os.WriteFile(filepath.Join(plain, "hello"), []byte("plain share\n"), 0o644)
	e.Must("machine", "init", "--share-type", "9p", "--no-home-share", "--cpus", "2", "--memory", "1G", "--disk-size", "4G",
		"--mount", e.Home+":/mnt/skiffhome", "--mount", plain+":/mnt/plain")
	e.Must("machine", "start")
	mounts := e.Must("machine", "ssh", "--", "grep ' 9p ' /proc/mounts || true")
	for _, l := range strings.Split(mounts, "\n") {
		if strings.Contains(l, "/mnt/plain") && strings.Contains(l, "trans=fd") {
			t.Fatalf("a share without Skiff's data left QEMU's 9p: %s", l)
		}
	}
	if out := e.Must("machine", "ssh", "--", "cat /mnt/plain/hello"); !strings.Contains(out, "plain share") {
		t.Fatalf("plain share: %q", out)
	}
	checkCoherent(t, e, "default", plain, "/mnt/plain")
	// However the guest asks, Skiff's home is not there: no secret, no disk, no image.
	out, err := e.Run("machine", "ssh", "--", "cat /mnt/skiffhome/machines/default/secret || ls /mnt/skiffhome/machines/default/")
	if err == nil {
		t.Fatalf("the guest reached Skiff's home through a share:\n%s", out)
	}
	e.LoadBusybox("default")
	out, err = e.DockerRun("default", "run", "--rm", "-v", filepath.Join(e.Home, "machines")+":/x", machinetest.TestImage, "ls", "/x")
	if err == nil || !strings.Contains(err.Error()+out, "Skiff's own data") {
		t.Fatalf("a container bind-mounted Skiff's home: %v\n%s", err, out)
	}
}
