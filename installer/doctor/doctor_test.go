package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/installer/internal/probe"
	"github.com/skiff-dev/skiff/machine/agentapi"
)

type fakeInfo struct{ mode fs.FileMode }

func (f fakeInfo) Name() string       { return "x" }
func (f fakeInfo) Size() int64        { return 0 }
func (f fakeInfo) Mode() fs.FileMode  { return f.mode }
func (f fakeInfo) ModTime() time.Time { return time.Time{} }
func (f fakeInfo) IsDir() bool        { return f.mode.IsDir() }
func (f fakeInfo) Sys() any           { return nil }

// fakeHost is a host whose files, sockets and processes are maps.
type fakeHost struct {
	files    map[string]fs.FileMode // path -> mode
	links    map[string]string
	live     map[string]bool // sockets answering /_ping
	env      map[string]string
	states   map[string]*agentapi.State // control socket -> state
	free     uint64
	kvmErr   error
	hv       bool
	bins     map[string]bool
	context  [2]string
	backend  string            // the machine's backend
	contents map[string]string // files ReadFile reads
}

// wslconfig is the healthy Windows user's .wslconfig.
var wslconfig = filepath.Join(`C:\Users\u`, ".wslconfig")

func healthy() *fakeHost {
	return &fakeHost{
		files: map[string]fs.FileMode{
			"/dev/kvm":                   fs.ModeDevice,
			"/home/u/.local/share/skiff": fs.ModeDir,
			"/home/u/.local/share/skiff/run/default/ctl.sock":    fs.ModeSocket,
			"/home/u/.local/share/skiff/run/default/docker.sock": fs.ModeSocket,
			"/var/run/docker.sock":                               fs.ModeSymlink,
		},
		links: map[string]string{"/var/run/docker.sock": "/home/u/.local/share/skiff/run/default/docker.sock"},
		live: map[string]bool{
			"/home/u/.local/share/skiff/run/default/ctl.sock":    true,
			"/home/u/.local/share/skiff/run/default/docker.sock": true,
		},
		env:      map[string]string{"USERPROFILE": `C:\Users\u`},
		backend:  "wsl2",
		contents: map[string]string{wslconfig: "[wsl2]\nmemory=8GB\n\n[experimental]\n# hand memory back\nautoMemoryReclaim = gradual\n"},
		states: map[string]*agentapi.State{
			"/home/u/.local/share/skiff/run/default/ctl.sock": {Name: "default", Forwards: []agentapi.Forward{{Proto: "tcp", HostAddr: "127.0.0.1:8080"}}},
		},
		free:    50 << 30,
		hv:      true,
		bins:    map[string]bool{"qemu-system-x86_64": true, "qemu-system-aarch64": true},
		context: [2]string{"skiff", "unix:///home/u/.local/share/skiff/run/default/docker.sock"},
	}
}

func (h *fakeHost) env_(goos string) Env {
	return Env{
		GOOS: goos, GOARCH: "amd64",
		Getenv: func(k string) string { return h.env[k] },
		LookPath: func(b string) (string, error) {
			if h.bins[b] {
				return "/usr/bin/" + b, nil
			}
			return "", errors.New("not found")
		},
		Lstat: func(p string) (fs.FileInfo, error) {
			if m, ok := h.files[p]; ok {
				return fakeInfo{m}, nil
			}
			return nil, fs.ErrNotExist
		},
		Readlink:  func(p string) (string, error) { return h.links[p], nil },
		ProbeKVM:  func(time.Duration) (string, error) { return "probed now", h.kvmErr },
		HVSupport: func(context.Context) (bool, error) { return h.hv, nil },
		Ping: func(_ context.Context, p string) error {
			if h.live[p] {
				return nil
			}
			if _, ok := h.files[p]; ok {
				return fmt.Errorf("%s: %w", p, probe.ErrNoListener)
			}
			return fs.ErrNotExist
		},
		Dial: func(_ context.Context, p string) error {
			if h.live[p] {
				return nil
			}
			return probe.ErrNoListener
		},
		PipeExists: func(string) (bool, error) { return false, nil },
		FreeBytes:  func(string) (uint64, error) { return h.free, nil },
		DockerContext: func() (string, string, error) {
			if h.context[0] == "missing" {
				return "missing", "", errors.New(`current docker context "missing" does not exist`)
			}
			return h.context[0], h.context[1], nil
		},
		Machines: func() ([]Machine, error) {
			r := "/home/u/.local/share/skiff/run/default/"
			return []Machine{{Name: "default", Backend: h.backend, Control: r + "ctl.sock", Engine: r + "docker.sock", Sockets: []string{r + "ctl.sock", r + "docker.sock"}}}, nil
		},
		ReadFile: func(p string) ([]byte, error) {
			if b, ok := h.contents[p]; ok {
				return []byte(b), nil
			}
			return nil, fs.ErrNotExist
		},
		AgentState: func(_ context.Context, c string) (*agentapi.State, error) {
			if s, ok := h.states[c]; ok && h.live[c] {
				return s, nil
			}
			return nil, errors.New("connection refused")
		},
		IsOurs:  func(p string) bool { return strings.HasPrefix(p, "/home/u/.local/share/skiff/") },
		DataDir: "/home/u/.local/share/skiff",
	}
}

func TestHealthyHostPasses(t *testing.T) {
	for _, goos := range []string{"linux", "darwin", "windows"} {
		fs := Run(context.Background(), healthy().env_(goos))
		for _, f := range fs {
			if !f.OK {
				t.Errorf("%s: %s: %s", goos, f.Check, f.Detail)
			}
		}
		want := 8
		if goos == "windows" {
			want = 9 // WSL memory
		}
		if Failed(fs) || len(fs) != want {
			t.Errorf("%s: %d findings, failed=%v", goos, len(fs), Failed(fs))
		}
	}
}

// Each case breaks the healthy host in one way and expects that check, and only that
// check, to report it.
func TestEachCheckFails(t *testing.T) {
	const run = "/home/u/.local/share/skiff/run/default/"
	cases := []struct {
		name   string
		goos   string
		breakf func(h *fakeHost)
		check  string
		warn   bool
		detail string
		fix    string
	}{
		{"no kvm", "linux", func(h *fakeHost) { delete(h.files, "/dev/kvm") }, "virtualization", true, "no /dev/kvm", "kvm_intel"},
		{"kvm hangs", "linux", func(h *fakeHost) {
			h.kvmErr = errors.New("KVM hangs: /dev/kvm opens but a test guest did not run within 3s")
		}, "virtualization", true, "TCG software emulation will be used (slow) (probed now)", "nested virtualization"},
		{"kvm permission", "linux", func(h *fakeHost) {
			h.kvmErr = fmt.Errorf("KVM unavailable: %w", fs.ErrPermission)
		}, "virtualization", true, "TCG", "kvm group"},
		{"no hypervisor on mac", "darwin", func(h *fakeHost) { h.hv = false }, "virtualization", false, "kern.hv_support", "Hypervisor.framework"},
		{"no qemu on linux", "linux", func(h *fakeHost) { h.bins = nil }, "qemu", false, "qemu-system-x86_64 not found", "apt-get install"},
		{"no qemu on mac", "darwin", func(h *fakeHost) { h.bins = nil }, "qemu", true, "not found", "brew install qemu"},
		{"DOCKER_HOST dead", "linux", func(h *fakeHost) { h.env["DOCKER_HOST"] = "unix:///tmp/gone.sock" }, "DOCKER_HOST", false, "dead socket", "unset DOCKER_HOST"},
		{"context dead", "linux", func(h *fakeHost) {
			delete(h.live, run+"docker.sock")
			delete(h.files, run+"docker.sock")
			delete(h.files, "/var/run/docker.sock")
		}, "docker context", false, "does not answer", "skiff machine start"},
		{"context foreign dead", "linux", func(h *fakeHost) {
			h.context = [2]string{"colima", "unix:///home/u/.colima/docker.sock"}
		}, "docker context", false, `"colima"`, "docker context use skiff"},
		{"context missing", "linux", func(h *fakeHost) { h.context[0] = "missing" }, "docker context", false, "does not exist", "docker context use"},
		{"well-known owned by other engine (link)", "darwin", func(h *fakeHost) {
			h.links["/var/run/docker.sock"] = "/Users/u/.docker/run/docker.sock"
		}, "well-known socket", true, "owned by another engine", "sudo rm /var/run/docker.sock"},
		{"well-known owned by other engine (live socket)", "linux", func(h *fakeHost) {
			h.files["/var/run/docker.sock"] = fs.ModeSocket
			h.live["/var/run/docker.sock"] = true
		}, "well-known socket", true, "another engine that is running", "systemctl disable --now docker"},
		{"wsl keeps memory (no .wslconfig)", "windows", func(h *fakeHost) { delete(h.contents, wslconfig) }, "WSL memory", true, "no " + wslconfig, "autoMemoryReclaim=gradual"},
		{"wsl keeps memory (disabled)", "windows", func(h *fakeHost) {
			h.contents[wslconfig] = "[experimental]\nautoMemoryReclaim=disabled\n"
		}, "WSL memory", true, "autoMemoryReclaim=disabled", "wsl --shutdown"},
		{"wsl keeps memory (other section)", "windows", func(h *fakeHost) {
			h.contents[wslconfig] = "[wsl2]\nautoMemoryReclaim=gradual\n"
		}, "WSL memory", true, "does not set autoMemoryReclaim", "[experimental]"},
		{"well-known stale", "linux", func(h *fakeHost) { h.files["/var/run/docker.sock"] = fs.ModeSocket }, "well-known socket", false, "stale socket", "sudo rm"},
		{"port conflict", "linux", func(h *fakeHost) {
			h.states[run+"ctl.sock"].Forwards[0].Error = "listen tcp 127.0.0.1:8080: bind: address already in use"
		}, "ports", false, "machine default wants 127.0.0.1:8080/tcp", "sport = :8080"},
		{"stale machine socket", "linux", func(h *fakeHost) {
			delete(h.live, run+"ctl.sock")
			h.context = [2]string{"default", ""}
		}, "sockets", false, "stale socket " + run + "ctl.sock", "skiff machine stop default"},
		{"low disk", "linux", func(h *fakeHost) { h.free = 1 << 30 }, "disk space", false, "1.0 GiB free", "SKIFF_HOME"},
		{"disk getting full", "linux", func(h *fakeHost) { h.free = 5 << 30 }, "disk space", true, "may fill", "free space"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := healthy()
			c.breakf(h)
			fs := Run(context.Background(), h.env_(c.goos))
			var hit bool
			for _, f := range fs {
				if f.OK {
					continue
				}
				if f.Check != c.check {
					t.Errorf("unexpected failure %s: %s", f.Check, f.Detail)
					continue
				}
				hit = true
				if f.Warn != c.warn || !strings.Contains(f.Detail, c.detail) || !strings.Contains(f.Fix, c.fix) {
					t.Errorf("got %+v\nwant warn=%v detail~%q fix~%q", f, c.warn, c.detail, c.fix)
				}
			}
			if !hit {
				t.Fatalf("check %s did not fail", c.check)
			}
			if Failed(fs) == c.warn {
				t.Errorf("Failed() = %v for warn=%v", Failed(fs), c.warn)
			}
		})
	}
}

func TestDiskLooksAtExistingParent(t *testing.T) {
	h := healthy()
	var asked string
	env := h.env_("linux")
	env.DataDir = "/home/u/.local/share/skiff/not/yet"
	env.FreeBytes = func(p string) (uint64, error) { asked = p; return 50 << 30, nil }
	CheckDisk(context.Background(), env)
	if asked != "/home/u/.local/share/skiff" {
		t.Fatalf("free space asked of %q", asked)
	}
}
