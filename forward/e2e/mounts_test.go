//go:build linux

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBindMount(t *testing.T) {
	m := machine(t)
	dir, err := os.MkdirTemp(m.homeDir, "bind")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "from-host"), []byte("written on the host\n"), 0o644)
	out := m.MustDocker("default", "run", "--rm", "-v", dir+":/src", img, "sh", "-c", "cat /src/from-host; echo written in the container > /src/from-container")
	if !strings.Contains(out, "written on the host") {
		t.Fatalf("the container did not read the host's file: %q", out)
	}
	got, err := os.ReadFile(filepath.Join(dir, "from-container"))
	if err != nil || strings.TrimSpace(string(got)) != "written in the container" {
		t.Fatalf("the host did not see the container's file: %q %v", got, err)
	}
	// :ro is enforced.
	if out, err := m.DockerRun("default", "run", "--rm", "-v", dir+":/src:ro", img, "sh", "-c", "echo x > /src/nope"); err == nil {
		t.Fatalf("a write to a :ro bind mount succeeded: %s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "nope")); err == nil {
		t.Fatal("a :ro bind mount let a file through")
	}
}

// TestPathTranslation uses a share whose guest path differs from its host path.
func TestPathTranslation(t *testing.T) {
	m := machine(t)
	sub := filepath.Join(m.extraHost, "sub")
	os.MkdirAll(sub, 0o755)
	os.WriteFile(filepath.Join(sub, "f"), []byte("translated\n"), 0o644)
	// The docker CLI sends the host path; the proxy rewrites it to /mnt/elsewhere/sub.
	out := m.MustDocker("default", "run", "--rm", "-v", sub+":/d", img, "cat", "/d/f")
	if strings.TrimSpace(out) != "translated" {
		t.Fatalf("translated bind mount read %q", out)
	}
	out = m.MustDocker("default", "run", "--rm", "--mount", "type=bind,source="+sub+",target=/d", img, "cat", "/d/f")
	if strings.TrimSpace(out) != "translated" {
		t.Fatalf("translated --mount read %q", out)
	}
	// A folder outside every share is an API error naming the shares, never an empty dir.
	outside, _ := os.MkdirTemp("", "notshared")
	defer os.RemoveAll(outside)
	_, err := m.DockerRun("default", "run", "--rm", "-v", outside+":/d", img, "ls", "/d")
	if err == nil || !strings.Contains(err.Error(), "not shared") || !strings.Contains(err.Error(), m.extraHost) {
		t.Fatalf("an unshared folder was not refused clearly: %v", err)
	}
}

// TestReadOnlyShare checks a share mounted :ro in the guest.
func TestReadOnlyShare(t *testing.T) {
	m := machine(t)
	os.WriteFile(filepath.Join(m.roDir, "ro-probe"), []byte("visible\n"), 0o644)
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := m.Run("machine", "ssh", "--", "cat /mnt/ro-view/ro-probe")
		if strings.Contains(out, "visible") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("read-only share does not show the host file: %s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out, err := m.Run("machine", "ssh", "--", "touch /mnt/ro-view/x"); err == nil {
		t.Fatalf("wrote into a read-only share: %s", out)
	}
}
