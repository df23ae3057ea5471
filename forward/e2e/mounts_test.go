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
	m.CheckBindMount("default", dir)
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
