//go:build linux

package e2e

import (
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/machine/machinetest"
)

// TestDiskFull fills the guest's data disk: the engine refuses with a clear error, and the
// machine still stops and starts with the disk full; freeing the space makes it whole.
func TestDiskFull(t *testing.T) {
	e := machinetest.New(t)
	e.Must("machine", "init", "--no-home-share", "--cpus", "2", "--memory", "1G", "--disk-size", "4G")
	e.Must("machine", "start")
	e.LoadBusybox("default")
	e.MustDocker("default", "volume", "create", "keepvol")
	e.MustDocker("default", "run", "--rm", "-v", "keepvol:/data", machinetest.TestImage, "sh", "-c", "echo precious > /data/f")
	// Everything the data disk has left, in one file.
	e.Must("machine", "ssh", "--", "fallocate -l $(( $(df -B1 --output=avail /var/lib/skiff | tail -1) - 4096 )) /var/lib/skiff/fill; df -h /var/lib/skiff")
	out, err := e.DockerRun("default", "run", "--rm", "-v", "keepvol:/data", machinetest.TestImage, "sh", "-c", "dd if=/dev/zero of=/data/big bs=1M count=64")
	if err == nil || !strings.Contains(strings.ToLower(err.Error()+out), "no space left") {
		t.Fatalf("writing to a full disk: %v\n%s", err, out)
	}
	t.Logf("refused: %s", lineWith(err.Error()+out, "space"))
	e.Must("machine", "stop", "--cold")
	out, err = e.Run("machine", "start")
	if err != nil {
		t.Fatalf("a machine with a full data disk does not start: %v\n%s", err, out)
	}
	if !strings.Contains(out, "data disk is full") {
		t.Errorf("start did not say the data disk is full:\n%s", out)
	}
	e.Must("machine", "ssh", "--", "rm /var/lib/skiff/fill")
	if out := e.MustDocker("default", "run", "--rm", "-v", "keepvol:/data", machinetest.TestImage, "cat", "/data/f"); strings.TrimSpace(out) != "precious" {
		t.Fatalf("the volume after the disk was full: %q", out)
	}
}

// lineWith is the first line of s that holds word.
func lineWith(s, word string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(strings.ToLower(l), word) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}
