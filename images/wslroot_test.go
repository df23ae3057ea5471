//go:build linux

package images

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// wslroot runs a function of wslroot.sh in bash and returns its output.
func wslroot(t *testing.T, env []string, call string) string {
	t.Helper()
	cmd := exec.Command("bash", "-c", `set -euo pipefail; . ./wslroot.sh; `+call)
	cmd.Env = append(os.Environ(), env...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", call, err, stderr.String())
	}
	return out.String()
}

// parseINI reads wsl.conf's format: [section] and key = value, # comments.
func parseINI(s string) map[string]string {
	kv, section := map[string]string{}, ""
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]"):
			section = strings.Trim(l, "[]")
		default:
			k, v, _ := strings.Cut(l, "=")
			kv[section+"."+strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return kv
}

func TestWSLConf(t *testing.T) {
	got := parseINI(wslroot(t, nil, "wsl_conf"))
	want := map[string]string{
		"boot.systemd":              "false",
		"interop.enabled":           "false",
		"interop.appendWindowsPath": "false",
		"automount.enabled":         "false",
		"automount.mountFsTab":      "false",
		"user.default":              "root",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("wsl.conf %s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("wsl.conf has settings the test does not know: %v", got)
	}
}

// TestWSLTar checks wsl_tar's promises on a small tree: each directory's entries in name
// order, numeric owners kept, every mtime the epoch, no pax times, and the same bytes twice.
func TestWSLTar(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the tree's files other owners")
	}
	dir := t.TempDir()
	tree := filepath.Join(dir, "root")
	for _, d := range []string{"usr/sbin", "etc", "a-b", "a"} {
		os.MkdirAll(filepath.Join(tree, d), 0o755)
	}
	for _, f := range []string{"etc/wsl.conf", "usr/sbin/skiff-agent", "a/z", "a/b", "a-b/x"} {
		os.WriteFile(filepath.Join(tree, f), []byte(f), 0o644)
	}
	os.Symlink("usr/sbin", filepath.Join(tree, "sbin"))
	os.Chown(filepath.Join(tree, "a/z"), 1234, 5678)
	os.Chmod(filepath.Join(tree, "usr/sbin/skiff-agent"), os.ModeSetuid|0o755)
	past := time.Unix(1e9, 0)
	os.Chtimes(filepath.Join(tree, "a/b"), past, past)

	env := []string{"SOURCE_DATE_EPOCH=1735689600"}
	one, two := filepath.Join(dir, "one.tar"), filepath.Join(dir, "two.tar")
	wslroot(t, env, "wsl_tar "+tree+" "+one)
	os.Chtimes(filepath.Join(tree, "a/z"), time.Now(), time.Now()) // a later build touched it
	wslroot(t, env, "wsl_tar "+tree+" "+two)
	a, _ := os.ReadFile(one)
	b, _ := os.ReadFile(two)
	if !bytes.Equal(a, b) {
		t.Error("two tars of the same tree differ")
	}

	var names []string
	tr := tar.NewReader(bytes.NewReader(a))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if !h.ModTime.Equal(time.Unix(1735689600, 0)) {
			t.Errorf("%s: mtime %s, want SOURCE_DATE_EPOCH", h.Name, h.ModTime)
		}
		if h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: owner names %q/%q, want numeric owners only", h.Name, h.Uname, h.Gname)
		}
		if !h.AccessTime.IsZero() || !h.ChangeTime.IsZero() {
			t.Errorf("%s: has access or change times", h.Name)
		}
		switch h.Name {
		case "./a/z":
			if h.Uid != 1234 || h.Gid != 5678 {
				t.Errorf("./a/z owned by %d:%d, want 1234:5678", h.Uid, h.Gid)
			}
		case "./usr/sbin/skiff-agent":
			if h.Mode&0o7777 != 0o4755 {
				t.Errorf("skiff-agent mode %o, want 4755", h.Mode)
			}
		case "./sbin":
			if h.Typeflag != tar.TypeSymlink || h.Linkname != "usr/sbin" {
				t.Errorf("./sbin is %q -> %q, want a symlink to usr/sbin", h.Typeflag, h.Linkname)
			}
		}
	}
	// Each directory's entries appear in name order.
	byDir := map[string][]string{}
	for _, n := range names {
		n = strings.TrimSuffix(n, "/")
		byDir[path.Dir(n)] = append(byDir[path.Dir(n)], path.Base(n))
	}
	for d, kids := range byDir {
		if !sort.StringsAreSorted(kids) {
			t.Errorf("entries of %s are not sorted: %v", d, kids)
		}
	}
	if len(names) != 12 {
		t.Errorf("%d entries, want 12: %v", len(names), names)
	}
}
