// Package doctor checks that this host can run Skiff machines and that the engine
// endpoints point where the user thinks. Every check reads the host only through Env,
// so each can be shown failing in a test with a fake host.
package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/skiff-dev/skiff/installer/internal/probe"
	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/machine/agentapi"
)

// Finding is the outcome of one check.
type Finding struct {
	Check  string `json:"check"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
	// Warn marks a finding that is not OK but leaves Skiff working (slower, or only
	// through docker contexts); it does not make doctor fail.
	Warn bool `json:"warn,omitempty"`
}

// Failed reports whether any finding is a failure rather than a warning.
func Failed(fs []Finding) bool {
	for _, f := range fs {
		if !f.OK && !f.Warn {
			return true
		}
	}
	return false
}

// ErrFailed is returned by the doctor command when a check fails.
var ErrFailed = errors.New("skiff doctor found problems")

// Machine is what the checks need to know about one machine.
type Machine struct {
	Name    string
	Backend string // the hypervisor backend it runs on
	Control string // the host agent's control socket
	Engine  string // the engine API socket on the host
	Sockets []string
}

// Env is the host as the checks see it.
type Env struct {
	GOOS, GOARCH string
	Getenv       func(string) string
	LookPath     func(string) (string, error)
	Lstat        func(string) (fs.FileInfo, error)
	Readlink     func(string) (string, error)
	// ProbeKVM runs a test guest on /dev/kvm (Linux), or recalls the verdict of an earlier
	// probe on this same host, and says which (how); nil elsewhere.
	ProbeKVM func(timeout time.Duration) (how string, err error)
	// HVSupport says whether the CPU and OS offer a hypervisor (macOS kern.hv_support).
	HVSupport func(ctx context.Context) (bool, error)
	// Ping asks the engine API on a unix socket for /_ping.
	Ping func(ctx context.Context, path string) error
	// Dial says whether anything listens on a unix socket; probe.ErrNoListener when not.
	Dial func(ctx context.Context, path string) error
	// PipeExists reports whether a Windows named pipe is being served.
	PipeExists func(name string) (bool, error)
	// FreeBytes is the space available to the user on the file system holding path.
	FreeBytes func(path string) (uint64, error)
	// DockerContext is the docker CLI's current context and its engine host ("" for
	// the default context).
	DockerContext func() (name, host string, err error)
	Machines      func() ([]Machine, error)
	AgentState    func(ctx context.Context, control string) (*agentapi.State, error)
	// ReadFile reads a file (the user's .wslconfig).
	ReadFile func(path string) ([]byte, error)
	// IsOurs says whether a socket path belongs to Skiff.
	IsOurs  func(path string) bool
	DataDir string
}

// DiskLimits are where disk space becomes a warning and a failure.
var (
	diskWarnBytes uint64 = 10 << 30
	diskFailBytes uint64 = 2 << 30
)

// Run runs every check in a fixed order.
func Run(ctx context.Context, env Env) []Finding {
	var out []Finding
	for _, c := range []func(context.Context, Env) []Finding{
		CheckVirtualization, CheckQEMU, CheckDockerHost, CheckDockerContext,
		CheckWellKnownSocket, CheckPorts, CheckSockets, CheckDisk, CheckWSLMemory,
	} {
		out = append(out, c(ctx, env)...)
	}
	return out
}

func ok(check, detail string) []Finding { return []Finding{{Check: check, OK: true, Detail: detail}} }

// CheckVirtualization says whether machines get hardware acceleration, for real: on
// some hosts /dev/kvm opens but guests hang, which only running one reveals.
func CheckVirtualization(ctx context.Context, env Env) []Finding {
	const name = "virtualization"
	switch env.GOOS {
	case "linux":
		if _, err := env.Lstat("/dev/kvm"); err != nil {
			return []Finding{{Check: name, Warn: true,
				Detail: "no /dev/kvm: machines run under TCG software emulation, which is much slower",
				Fix:    "enable virtualization (VT-x/AMD-V) in the firmware, load kvm_intel or kvm_amd, or enable nested virtualization for this VM"}}
		}
		if env.ProbeKVM == nil {
			return ok(name, "/dev/kvm present (not probed)")
		}
		how, err := env.ProbeKVM(3 * time.Second)
		f := Finding{Check: name, Warn: true}
		switch {
		case err == nil:
			f = Finding{Check: name, OK: true, Detail: "KVM runs guests"}
		case strings.Contains(err.Error(), "hangs"):
			f.Detail = "KVM hangs: /dev/kvm opens but a test guest never runs, so TCG software emulation will be used (slow)"
			f.Fix = "on a cloud or nested VM, enable nested virtualization for this instance; otherwise nothing to do, Skiff falls back to TCG"
		case errors.Is(err, fs.ErrPermission):
			f.Detail = "KVM unusable: " + err.Error() + "; TCG software emulation will be used"
			f.Fix = "add yourself to the kvm group (sudo usermod -aG kvm $USER) and log in again"
		default:
			f.Detail = "KVM unusable: " + err.Error() + "; TCG software emulation will be used"
			f.Fix = "check `dmesg` for KVM errors"
		}
		if how != "" {
			f.Detail += " (" + how + ")"
		}
		return []Finding{f}
	case "darwin":
		if env.HVSupport == nil {
			return ok(name, "not probed")
		}
		on, err := env.HVSupport(ctx)
		if err != nil || !on {
			d := "this Mac offers no hypervisor (kern.hv_support is 0)"
			if err != nil {
				d = "cannot read kern.hv_support: " + err.Error()
			}
			return []Finding{{Check: name, Detail: d, Fix: "Skiff needs Hypervisor.framework: use a Mac with virtualization support, or enable nested virtualization if this macOS is itself a VM"}}
		}
		return ok(name, "Hypervisor.framework available")
	}
	return ok(name, "checked by the WSL2/Hyper-V backend when a machine starts")
}

// CheckQEMU looks for the QEMU binary the qemu backend needs.
func CheckQEMU(_ context.Context, env Env) []Finding {
	bin := "qemu-system-x86_64"
	if env.GOARCH == "arm64" {
		bin = "qemu-system-aarch64"
	}
	p, err := env.LookPath(bin)
	if err == nil {
		return ok("qemu", p)
	}
	f := Finding{Check: "qemu", Detail: bin + " not found on PATH"}
	switch env.GOOS {
	case "linux":
		f.Fix = "install QEMU: sudo apt-get install qemu-system-x86 (Debian/Ubuntu), sudo dnf install qemu-kvm (Fedora)"
	case "darwin":
		// vz needs no QEMU; only machines on the qemu backend do.
		f.Warn, f.Fix = true, "only needed for --backend qemu: brew install qemu"
	default:
		f.Warn, f.Fix = true, "only needed for --backend qemu: winget install SoftwareFreedomConservancy.QEMU"
	}
	return []Finding{f}
}

// CheckDockerHost catches a DOCKER_HOST left pointing at a socket nothing serves, which
// overrides every docker context.
func CheckDockerHost(ctx context.Context, env Env) []Finding {
	const name = "DOCKER_HOST"
	h := env.Getenv("DOCKER_HOST")
	if h == "" {
		return ok(name, "not set")
	}
	p, isUnix := strings.CutPrefix(h, "unix://")
	if !isUnix {
		return ok(name, h+" (not a unix socket; not checked)")
	}
	if err := env.Ping(ctx, p); err != nil {
		return []Finding{{Check: name, Detail: fmt.Sprintf("DOCKER_HOST=%s points at a dead socket: %v", h, err),
			Fix: "start the machine it belongs to (skiff machine start), or `unset DOCKER_HOST` and use `docker context use skiff`; remove it from your shell profile if it is set there"}}
	}
	return ok(name, h+" answers")
}

// CheckDockerContext checks the engine behind the docker CLI's current context.
func CheckDockerContext(ctx context.Context, env Env) []Finding {
	const name = "docker context"
	ctxName, host, err := env.DockerContext()
	if err != nil {
		return []Finding{{Check: name, Detail: err.Error(), Fix: "pick a working context: docker context ls; docker context use skiff"}}
	}
	if ctxName == "" || ctxName == "default" {
		return ok(name, "default (uses DOCKER_HOST or the well-known socket)")
	}
	suffix := ""
	if env.Getenv("DOCKER_HOST") != "" {
		suffix = " (DOCKER_HOST overrides it)"
	}
	p, isUnix := strings.CutPrefix(host, "unix://")
	if !isUnix {
		return ok(name, ctxName+" -> "+host+" (not checked)"+suffix)
	}
	if err := env.Ping(ctx, p); err != nil {
		fix := "start the engine it belongs to, or switch: docker context use skiff"
		if env.IsOurs != nil && env.IsOurs(p) {
			fix = "start the machine: skiff machine start (or the named machine)"
		}
		return []Finding{{Check: name, Detail: fmt.Sprintf("current context %q points at %s, which does not answer: %v", ctxName, host, err), Fix: fix}}
	}
	return ok(name, ctxName+" -> "+host+" answers"+suffix)
}

// CheckWellKnownSocket says who owns the socket (or pipe) that tools ignoring contexts use.
func CheckWellKnownSocket(ctx context.Context, env Env) []Finding {
	const name = "well-known socket"
	if env.GOOS == "windows" {
		const pipe = `\\.\pipe\docker_engine`
		if env.PipeExists == nil {
			return ok(name, "not checked")
		}
		on, err := env.PipeExists(pipe)
		if err != nil {
			return []Finding{{Check: name, Warn: true, Detail: err.Error()}}
		}
		if on {
			return ok(name, pipe+" is served (by Skiff or another engine)")
		}
		return ok(name, pipe+" is free")
	}
	const p = "/var/run/docker.sock"
	fi, err := env.Lstat(p)
	if err != nil {
		return ok(name, p+" absent: only tools that honour docker contexts or DOCKER_HOST reach Skiff (skiff system socket link adds it)")
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		t, err := env.Readlink(p)
		if err != nil {
			return []Finding{{Check: name, Detail: err.Error()}}
		}
		if !filepath.IsAbs(t) {
			t = filepath.Join(filepath.Dir(p), t)
		}
		if env.IsOurs != nil && env.IsOurs(t) {
			if err := env.Ping(ctx, t); err != nil {
				return []Finding{{Check: name, Warn: true, Detail: p + " links to Skiff's " + t + ", which is not running", Fix: "start that machine, or remove the link: skiff system socket unlink"}}
			}
			return ok(name, p+" -> Skiff ("+t+")")
		}
		return []Finding{{Check: name, Warn: true, Detail: p + " is owned by another engine: it links to " + t,
			Fix: "tools that ignore docker contexts will use that engine; to hand it to Skiff, quit that engine, `sudo rm " + p + "`, then `skiff system socket link`"}}
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return []Finding{{Check: name, Detail: p + " exists but is not a socket", Fix: "move it away: sudo mv " + p + " " + p + ".bak"}}
	}
	if err := env.Ping(ctx, p); err != nil {
		if errors.Is(err, probe.ErrNoListener) {
			return []Finding{{Check: name, Detail: p + " is a stale socket: no engine listens on it", Fix: "if no engine will use it again: sudo rm " + p}}
		}
		return []Finding{{Check: name, Warn: true, Detail: p + ": " + err.Error()}}
	}
	return []Finding{{Check: name, Warn: true, Detail: p + " is owned by another engine that is running (not Skiff)",
		Fix: "tools that ignore docker contexts use that engine; stop it (sudo systemctl disable --now docker.socket docker.service) to hand the socket to Skiff"}}
}

// CheckPorts reports published ports a running machine could not bind on the host
// because something else holds them.
func CheckPorts(ctx context.Context, env Env) []Finding {
	const name = "ports"
	ms, err := env.Machines()
	if err != nil {
		return []Finding{{Check: name, Warn: true, Detail: "cannot list machines: " + err.Error()}}
	}
	var out []Finding
	running := 0
	for _, m := range ms {
		st, err := env.AgentState(ctx, m.Control)
		if err != nil {
			continue // not running; CheckSockets looks at leftovers
		}
		running++
		for _, f := range st.Forwards {
			if f.Error == "" {
				continue
			}
			port := f.HostAddr
			if _, p, err := net.SplitHostPort(f.HostAddr); err == nil {
				port = p
			}
			out = append(out, Finding{Check: name,
				Detail: fmt.Sprintf("machine %s wants %s/%s but it is in use: %s", m.Name, f.HostAddr, f.Proto, f.Error),
				Fix:    fmt.Sprintf("find the process holding it (Linux: ss -ltnp 'sport = :%s'; macOS: lsof -nP -i :%s; Windows: netstat -ano | findstr :%s) and stop it, or publish the container on another port", port, port, port)})
		}
	}
	if out != nil {
		return out
	}
	return ok(name, fmt.Sprintf("no conflicts (%d running machine(s))", running))
}

// CheckSockets finds socket files nobody listens on: what a crashed host agent leaves.
func CheckSockets(ctx context.Context, env Env) []Finding {
	const name = "sockets"
	ms, err := env.Machines()
	if err != nil {
		return []Finding{{Check: name, Warn: true, Detail: "cannot list machines: " + err.Error()}}
	}
	var out []Finding
	for _, m := range ms {
		for _, s := range m.Sockets {
			if _, err := env.Lstat(s); err != nil {
				continue
			}
			if err := env.Dial(ctx, s); errors.Is(err, probe.ErrNoListener) {
				out = append(out, Finding{Check: name,
					Detail: fmt.Sprintf("machine %s: stale socket %s has no listener (its host agent is gone)", m.Name, s),
					Fix:    fmt.Sprintf("skiff machine stop %s clears it; or remove the file: rm %s", m.Name, s)})
			}
		}
	}
	if out != nil {
		return out
	}
	return ok(name, fmt.Sprintf("no stale sockets (%d machine(s))", len(ms)))
}

// CheckDisk wants room in the data directory for disk images to grow.
func CheckDisk(_ context.Context, env Env) []Finding {
	const name = "disk space"
	dir := env.DataDir
	// The data dir may not exist yet; its nearest existing parent is where it will be.
	for dir != "" {
		if _, err := env.Lstat(dir); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	free, err := env.FreeBytes(dir)
	if err != nil {
		return []Finding{{Check: name, Warn: true, Detail: "cannot read free space of " + dir + ": " + err.Error()}}
	}
	d := fmt.Sprintf("%.1f GiB free in %s", float64(free)/(1<<30), dir)
	switch {
	case free < diskFailBytes:
		return []Finding{{Check: name, Detail: d + ": too little for a machine's disk image", Fix: "free space, or move Skiff's data with SKIFF_HOME to a larger disk"}}
	case free < diskWarnBytes:
		return []Finding{{Check: name, Warn: true, Detail: d + ": machine disks may fill it", Fix: "free space, or move Skiff's data with SKIFF_HOME to a larger disk"}}
	}
	return ok(name, d)
}

// CheckWSLMemory wants WSL to hand back memory its VM no longer uses: WSL 2 keeps what
// Linux once used (page cache included) unless .wslconfig's autoMemoryReclaim says
// otherwise, and Skiff's WSL machines run in that one VM. It speaks only on Windows hosts
// with a WSL machine.
func CheckWSLMemory(_ context.Context, env Env) []Finding {
	const name = "WSL memory"
	if env.GOOS != "windows" {
		return nil
	}
	ms, err := env.Machines()
	if err != nil {
		return nil
	}
	wsl := false
	for _, m := range ms {
		wsl = wsl || m.Backend == "wsl2"
	}
	if !wsl {
		return nil
	}
	path := filepath.Join(env.Getenv("USERPROFILE"), ".wslconfig")
	fix := "add to " + path + ":\n  [experimental]\n  autoMemoryReclaim=gradual\nthen run `wsl --shutdown` (Skiff's WSL machines start again with `skiff machine start`)"
	b, err := env.ReadFile(path)
	if err != nil {
		return []Finding{{Check: name, Warn: true, Detail: "no " + path + ": WSL keeps the memory its VM once used until it shuts down", Fix: fix}}
	}
	switch v := wslSetting(string(b), "experimental", "autoMemoryReclaim"); strings.ToLower(v) {
	case "gradual", "dropcache":
		return ok(name, "autoMemoryReclaim="+v+": WSL hands back memory its VM no longer uses")
	case "":
		return []Finding{{Check: name, Warn: true, Detail: path + " does not set autoMemoryReclaim: WSL keeps the memory its VM once used until it shuts down", Fix: fix}}
	default:
		return []Finding{{Check: name, Warn: true, Detail: "autoMemoryReclaim=" + v + " in " + path + ": WSL keeps the memory its VM once used until it shuts down", Fix: fix}}
	}
}

// wslSetting is key's value in section of a .wslconfig (an INI file), "" if unset.
func wslSetting(ini, section, key string) string {
	in := false
	for _, line := range strings.Split(ini, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") || line == "" {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			in = strings.EqualFold(strings.TrimSpace(line[1:len(line)-1]), section)
			continue
		}
		if k, v, ok := strings.Cut(line, "="); in && ok && strings.EqualFold(strings.TrimSpace(k), key) {
			v, _, _ = strings.Cut(v, "#")
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// MachinesIn lists machines of a Skiff home with the sockets doctor looks at.
func MachinesIn(h machine.Home) ([]Machine, error) {
	names, err := h.List()
	if err != nil {
		return nil, err
	}
	out := make([]Machine, 0, len(names))
	for _, n := range names {
		d := h.Dir(n)
		var backend string
		if s, err := d.Spec(); err == nil {
			backend = s.Backend
		}
		out = append(out, Machine{
			Name:    n,
			Backend: backend,
			Control: d.Sock(machine.SockControl),
			Engine:  d.EngineEndpoint(),
			Sockets: []string{d.Sock(machine.SockControl), d.EngineEndpoint()},
		})
	}
	return out, nil
}
