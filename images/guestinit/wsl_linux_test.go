package guestinit

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-dev/skiff/vmm/wsl2"
)

// WindowsPath undoes vmm/wsl2.GuestPath, which names the seed the agent is given.
func TestWindowsPathInvertsGuestPath(t *testing.T) {
	for _, win := range []string{`C:\Users\me\.skiff\dev`, `D:\x`, `C:\`} {
		g, err := wsl2.GuestPath(win)
		if err != nil {
			t.Fatal(err)
		}
		back, err := WindowsPath(g)
		if err != nil || back != win {
			t.Errorf("WindowsPath(%q) = %q, %v; want %q", g, back, err, win)
		}
	}
	for _, bad := range []string{"/var/lib/x", "/mnt/wsl/x", "/mnt/", "/mnt/1/x"} {
		if p, err := WindowsPath(bad); err == nil {
			t.Errorf("WindowsPath(%q) = %q; want an error", bad, p)
		}
	}
}

func TestMountPoints(t *testing.T) {
	f := filepath.Join(t.TempDir(), "mountinfo")
	os.WriteFile(f, []byte("22 1 0:21 / /proc rw,nosuid shared:12 - proc proc rw\n"+
		"30 22 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"+
		"40 1 0:40 / /mnt/c/with\\040space ro - 9p drvfs ro\n"), 0o644)
	got, err := mountPoints(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/proc", "/sys/fs/cgroup", "/mnt/c/with space"} {
		if !got[p] {
			t.Errorf("%s not read as mounted: %v", p, got)
		}
	}
	if got["/dev/pts"] || len(got) != 3 {
		t.Errorf("mount points %v", got)
	}
}

// StopDescendants ends a child and its own child, and nothing outside the process's tree.
func TestStopDescendants(t *testing.T) {
	// Started through a shell that exits: re-parented away from the test, an outsider.
	out, err := exec.Command("sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!").Output()
	if err != nil {
		t.Fatal(err)
	}
	var outsider int
	if _, err := fmt.Sscan(string(out), &outsider); err != nil {
		t.Fatal(err)
	}
	defer unix.Kill(outsider, unix.SIGKILL)
	tree := exec.Command("sh", "-c", "sleep 60 & sleep 60; wait")
	if err := tree.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- tree.Wait() }()
	time.Sleep(200 * time.Millisecond)
	if n := signalDescendants(0); n < 3 {
		t.Fatalf("%d descendants seen, want the shell and its two sleeps", n)
	}
	start := time.Now()
	StopDescendants(5 * time.Second)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the child still runs after StopDescendants")
	}
	if time.Since(start) > 4*time.Second {
		t.Errorf("StopDescendants took %s for processes that end on SIGTERM", time.Since(start))
	}
	if err := unix.Kill(outsider, 0); err != nil {
		t.Errorf("a process outside the tree was stopped: %v", err)
	}
}

func TestDrvfsArgs(t *testing.T) {
	got := drvfsArgs(`C:\Users\me\.skiff\dev`, "/mnt/c/Users/me/.skiff/dev", true)
	want := []string{"-t", "drvfs", "-o", "ro", `C:\Users\me\.skiff\dev`, "/mnt/c/Users/me/.skiff/dev"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("seed folder: mount %q, want %q", got, want)
	}
	if got := drvfsArgs(`D:\src`, "/src", false); got[3] != "rw" {
		t.Errorf("a writable share mounts %q", got)
	}
}
