package machine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseMountPaths(t *testing.T) {
	home, err := os.UserHomeDir()
	if err != nil {
		t.Skip(err)
	}
	m, err := ParseMount("~/src:ro")
	if err != nil || m.HostPath != filepath.Join(home, "src") || m.GuestPath != filepath.ToSlash(filepath.Join(home, "src")) || !m.ReadOnly {
		t.Fatalf("~/src:ro: %+v %v", m, err)
	}
	if m, err := ParseMount("~/src:/w"); err != nil || m.GuestPath != "/w" {
		t.Fatalf("~/src:/w: %+v %v", m, err)
	}
	if _, err := ParseMount("relative/path"); err == nil || !strings.Contains(err.Error(), "must be absolute") {
		t.Fatalf("a relative path: %v", err)
	}
}
