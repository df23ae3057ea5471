//go:build linux

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/machine/machinetest"
)

// Each bad input must give one clear line, exit non-zero, and leave nothing behind.
func TestBadInput(t *testing.T) {
	e := machinetest.New(t)
	e.Must("machine", "init", "keep", "--cpus", "1", "--memory", "512M", "--disk-size", "4G")
	before := tree(t, e.Home)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"machine", "init", "Bad_Name!"}, "invalid machine name"},
		{[]string{"machine", "init", "x", "--cpus", "0"}, "at least 1 CPU"},
		{[]string{"machine", "init", "x", "--memory", "100T"}, "this host has only"},
		{[]string{"machine", "init", "x", "--disk-size", "1M"}, "--disk-size"},
		{[]string{"machine", "init", "x", "--engine", "lxc"}, "use docker or podman"},
		{[]string{"machine", "init", "keep"}, "already exists"},
		{[]string{"machine", "rm", "nosuch"}, "does not exist"},
		{[]string{"machine", "start", "nosuch"}, "does not exist"},
		{[]string{"machine", "init", "x", "--image", "/nonexistent/image"}, "no such file"},
		{[]string{"machine", "init", "x", "--mount", "relative/path"}, "must be absolute"},
	}
	for _, c := range cases {
		out, err := e.Run(c.args...)
		if err == nil {
			t.Errorf("skiff %s succeeded; want an error", strings.Join(c.args, " "))
			continue
		}
		out = strings.TrimSpace(out)
		if strings.Count(out, "\n") != 0 {
			t.Errorf("skiff %s: want one line, got:\n%s", strings.Join(c.args, " "), out)
		}
		if !strings.Contains(out, c.want) {
			t.Errorf("skiff %s: %q does not mention %q", strings.Join(c.args, " "), out, c.want)
		}
	}
	if after := tree(t, e.Home); after != before {
		t.Errorf("bad input changed the Skiff home:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// tree lists the files under dir with their sizes.
func tree(t *testing.T, dir string) string {
	var b strings.Builder
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !strings.HasSuffix(p, ".lock") {
			rel, _ := filepath.Rel(dir, p)
			b.WriteString(rel + "\n")
		}
		return nil
	})
	return b.String()
}
