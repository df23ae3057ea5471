// Package pathmap translates host paths in engine API requests into the paths where the
// shares sit in the guest. The engine runs in the VM and cannot see C:\Users\x or a Mac
// path that is shared elsewhere; without translation it would silently create an empty
// directory, which is the failure users hate most.
package pathmap

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Within reports whether p is root or below it, as this OS's paths, lexically: no
// symlink is followed.
func Within(p, root string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && filepath.IsLocal(rel)
}

// Share is a host folder and where the guest mounts it.
type Share struct {
	Host  string
	Guest string
}

// Table translates paths through a set of shares.
type Table struct {
	shares []normShare
	// Passthrough lists guest paths that bind mounts may name directly (the engine
	// socket, /proc ...): they are the guest's own, not the host's.
	passthrough []string
	deny        []denied
}

type denied struct {
	key  hostPath
	orig string
}

type normShare struct {
	key   hostPath
	guest string
	orig  string
}

// hostPath is a host path in canonical form: a volume ("" for Unix, "c:" for a drive,
// "//server/share" for UNC) and a cleaned slash path below it.
type hostPath struct {
	volume string
	rest   string
	fold   bool // case-insensitive (Windows)
}

// DefaultPassthrough are guest paths commonly bind-mounted from "the host" on Linux, which
// for Skiff means the VM.
var DefaultPassthrough = []string{
	"/var/run/docker.sock", "/run/docker.sock", "/var/run/podman", "/run/podman",
	"/proc", "/sys", "/dev", "/lib/modules", "/etc/localtime", "/etc/timezone",
	"/var/lib/docker", "/var/lib/containers", "/run/skiff", "/var/log",
}

// New builds a table. Shares are matched longest-prefix first.
func New(shares []Share, passthrough []string) (*Table, error) {
	t := &Table{passthrough: passthrough}
	for _, s := range shares {
		k, ok := parseHost(s.Host)
		if !ok {
			return nil, fmt.Errorf("share host path %q is not absolute", s.Host)
		}
		if !strings.HasPrefix(s.Guest, "/") {
			return nil, fmt.Errorf("share guest path %q is not absolute", s.Guest)
		}
		t.shares = append(t.shares, normShare{key: k, guest: path.Clean(s.Guest), orig: s.Host})
	}
	sort.SliceStable(t.shares, func(i, j int) bool {
		return len(t.shares[i].key.volume+t.shares[i].key.rest) > len(t.shares[j].key.volume+t.shares[j].key.rest)
	})
	return t, nil
}

// Deny refuses host paths at or below each of paths (Skiff's own data directory)
// whatever the shares say. The share servers refuse them too; this gives the docker
// client the reason instead of an empty or unreadable folder.
func (t *Table) Deny(paths ...string) error {
	for _, p := range paths {
		k, ok := parseHost(p)
		if !ok {
			return fmt.Errorf("denied host path %q is not absolute", p)
		}
		k.fold = true // macOS and Windows name one folder in any case
		t.deny = append(t.deny, denied{key: k, orig: p})
	}
	return nil
}

// ErrDenied is why a denied path is refused.
var ErrDenied = errors.New("Skiff's own data is never shared with a machine")

// DeniedError says a path is, or is inside, a denied path.
type DeniedError struct {
	Path   string
	Denied string
}

func (e *DeniedError) Error() string {
	return fmt.Sprintf("mounts denied: %s is inside %s: %v", e.Path, e.Denied, ErrDenied)
}

func (e *DeniedError) Unwrap() error { return ErrDenied }

// NotSharedError says a path is outside every share.
type NotSharedError struct {
	Path   string
	Shares []string
}

func (e *NotSharedError) Error() string {
	if len(e.Shares) == 0 {
		return fmt.Sprintf("mounts denied: %s is not shared from the host, and this machine shares no folders: add one with `skiff machine init --mount`", e.Path)
	}
	return fmt.Sprintf("mounts denied: %s is not shared from the host; shared folders are: %s (add more with `skiff machine init --mount`)", e.Path, strings.Join(e.Shares, ", "))
}

func (t *Table) sharedList() []string {
	var out []string
	for _, s := range t.shares {
		out = append(out, s.orig)
	}
	sort.Strings(out)
	return out
}

// Translate maps a host path to its guest path. Guest system paths in the passthrough
// list are returned unchanged; anything else outside the shares is an error.
func (t *Table) Translate(p string) (string, error) {
	hp, ok := parseHost(p)
	if !ok {
		return "", fmt.Errorf("mounts denied: %q is not an absolute path", p)
	}
	for _, d := range t.deny {
		if _, in := under(hp, d.key); in {
			return "", &DeniedError{Path: p, Denied: d.orig}
		}
	}
	for _, s := range t.shares {
		if rel, ok := under(hp, s.key); ok {
			if rel == "" {
				return s.guest, nil
			}
			return path.Join(s.guest, rel), nil
		}
	}
	if hp.volume == "" {
		for _, g := range t.passthrough {
			if hp.rest == g || strings.HasPrefix(hp.rest, strings.TrimSuffix(g, "/")+"/") {
				return hp.rest, nil
			}
		}
	}
	return "", &NotSharedError{Path: p, Shares: t.sharedList()}
}

// under returns p relative to base when p is base or inside it.
func under(p, base hostPath) (string, bool) {
	eq := func(a, b string) bool {
		if base.fold || p.fold {
			return strings.EqualFold(a, b)
		}
		return a == b
	}
	if !eq(p.volume, base.volume) {
		return "", false
	}
	if base.rest == "/" {
		return strings.TrimPrefix(p.rest, "/"), true
	}
	if eq(p.rest, base.rest) {
		return "", true
	}
	if len(p.rest) > len(base.rest) && p.rest[len(base.rest)] == '/' && eq(p.rest[:len(base.rest)], base.rest) {
		return p.rest[len(base.rest)+1:], true
	}
	return "", false
}

// parseHost recognises Unix paths, drive paths (C:\x, C:/x), UNC paths (\\server\share\x),
// WSL paths (\\wsl$\distro\x, \\wsl.localhost\distro\x) and MSYS-style /c/x is left as
// Unix (it may be a real Unix path). Backslashes become slashes; ".." is resolved so no
// path can climb out of a share.
func parseHost(p string) (hostPath, bool) {
	switch {
	case len(p) >= 3 && isLetter(p[0]) && p[1] == ':' && (p[2] == '\\' || p[2] == '/'):
		rest := path.Clean("/" + strings.ReplaceAll(p[3:], `\`, "/"))
		return hostPath{volume: strings.ToLower(p[:2]), rest: rest, fold: true}, true
	case strings.HasPrefix(p, `\\`) || strings.HasPrefix(p, `//`):
		s := strings.ReplaceAll(p[2:], `\`, "/")
		parts := strings.SplitN(s, "/", 3)
		if len(parts) < 2 || parts[0] == "" || parts[1] == "" || parts[0] == "." || parts[0] == "?" {
			return hostPath{}, false
		}
		rest := "/"
		if len(parts) == 3 {
			rest = path.Clean("/" + parts[2])
		}
		server := strings.ToLower(parts[0])
		if server == "wsl.localhost" {
			server = "wsl$" // two names for the same thing
		}
		return hostPath{volume: "//" + server + "/" + strings.ToLower(parts[1]), rest: rest, fold: true}, true
	case strings.HasPrefix(p, "/"):
		return hostPath{rest: path.Clean(p)}, true
	}
	return hostPath{}, false
}

func isLetter(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }

// IsHostPath reports whether s looks like a host path (as opposed to a named volume).
func IsHostPath(s string) bool {
	_, ok := parseHost(s)
	return ok
}

// TranslateBind rewrites the source of a Binds entry ("SRC:DST[:OPTS]"), leaving named
// volumes alone. A Windows drive letter in SRC is not mistaken for the separator.
func (t *Table) TranslateBind(bind string) (string, error) {
	src, rest := splitBind(bind)
	if !IsHostPath(src) {
		return bind, nil // a named volume
	}
	g, err := t.Translate(src)
	if err != nil {
		return "", err
	}
	return g + rest, nil
}

func splitBind(b string) (src, rest string) {
	start := 0
	if len(b) >= 3 && isLetter(b[0]) && b[1] == ':' && (b[2] == '\\' || b[2] == '/') {
		start = 2
	}
	i := strings.IndexByte(b[start:], ':')
	if i < 0 {
		return b, ""
	}
	return b[:start+i], b[start+i:]
}
