// Package machine holds a machine's spec, its directory on disk and its lifecycle.
// Status is always computed from the live processes and sockets, never stored.
package machine

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"

	"github.com/skiff-dev/skiff/machine/atomicfile"
)

// SchemaVersion is bumped whenever Spec changes shape; Load refuses newer files rather
// than silently dropping fields it does not know.
const SchemaVersion = 1

// Engine is the container engine the guest runs.
type Engine string

const (
	EngineDocker Engine = "docker"
	EnginePodman Engine = "podman"
)

// Mount is a host folder shared into the guest.
type Mount struct {
	HostPath  string `json:"hostPath"`
	GuestPath string `json:"guestPath"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
}

// ImageRef pins the guest image a machine boots: the manifest digest and where its
// verified files sit in the cache.
type ImageRef struct {
	Digest  string `json:"digest"`
	Version string `json:"version"`
	Dir     string `json:"dir"`
	Source  string `json:"source"`
	Arch    string `json:"arch"`
}

// Arch is the guest architecture: the image's.
func (s *Spec) Arch() string {
	if s.Image.Arch != "" {
		return s.Image.Arch
	}
	return runtime.GOARCH
}

// Spec is a machine's desired configuration. It round-trips through JSON unchanged.
type Spec struct {
	SchemaVersion int      `json:"schemaVersion"`
	Name          string   `json:"name"`
	Backend       string   `json:"backend"`
	CPUs          int      `json:"cpus"`
	MemoryMiB     int64    `json:"memoryMiB"`
	DiskGiB       int64    `json:"diskGiB"`
	Engine        Engine   `json:"engine"`
	Image         ImageRef `json:"image"`
	Mounts        []Mount  `json:"mounts"`
	// PortBindAddress is the host address published ports bind to. Empty means
	// 127.0.0.1: reachable only from this host unless the user asks otherwise.
	PortBindAddress string `json:"portBindAddress,omitempty"`
	// ShareType overrides the backend's way of sharing folders: "9p", "virtiofs" or
	// "9p-transport" (the Go 9p server over the host<->guest transport).
	ShareType string `json:"shareType,omitempty"`
	Autostart bool   `json:"autostart,omitempty"`
	// SwitchContext: every start makes the machine's docker context the current one, even
	// over a context the user chose (without it, only over an engine-less "default").
	SwitchContext bool `json:"switchContext,omitempty"`
	// NoHostLoopback cuts containers off from the host's own loopback services, which
	// they otherwise reach at host.docker.internal (the user-mode network's host address).
	NoHostLoopback bool `json:"noHostLoopback,omitempty"`
	// MemoryReclaim is how guest memory the guest no longer uses goes back to the host
	// (vmm.Reclaim*): empty is the backend's best (free page reporting on QEMU, the
	// balloon policy on vz, dynamic memory on Hyper-V); "balloon" drives a traditional
	// balloon from the guest's reports, as vz must; "off" keeps what the guest once used.
	MemoryReclaim string `json:"memoryReclaim,omitempty"`
	// NoFileEvents turns off raising host file changes as inotify events on the guest's
	// 9p and virtiofs shares (forward/fsevents).
	NoFileEvents bool `json:"noFileEvents,omitempty"`
	// NetworkGroup puts the machine on a network it shares with the other machines of the
	// group (a second NIC; forward/usernet/netgroup). GroupLease is its address there,
	// given at init or set and kept until it leaves the group.
	NetworkGroup string      `json:"networkGroup,omitempty"`
	GroupLease   *GroupLease `json:"groupLease,omitempty"`
	// Kubernetes runs a single-node Kubernetes in the machine beside its engine, from the
	// image's Kubernetes layer (downloaded only for machines that ask for it).
	Kubernetes bool `json:"kubernetes,omitempty"`
}

// KubernetesMinMemoryMiB is the least memory a machine with Kubernetes gets: etcd, the
// control plane, kubelet and containerd run beside the engine and the pods.
const KubernetesMinMemoryMiB = 2048

// GroupLease is a machine's address and MAC on its network group.
type GroupLease struct {
	Address string `json:"address"`
	MAC     string `json:"mac"`
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,29}$`)

// DefaultName is the machine used when a command is given no name.
const DefaultName = "default"

// ValidateName rejects names that would be unsafe as file names or docker context names.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("invalid machine name %q: use 1-30 characters a-z, 0-9, '-', '_' or '.', starting with a letter or digit", name)
	}
	return nil
}

// Limits bounds what a spec may ask of the host.
type Limits struct {
	HostCPUs      int
	HostMemoryMiB int64
}

// HostLimits reads the limits of this host.
func HostLimits() Limits {
	return Limits{HostCPUs: runtime.NumCPU(), HostMemoryMiB: hostMemoryMiB()}
}

// Validate checks a spec against itself and the host, so that impossible requests fail
// before anything is written to disk.
func (s *Spec) Validate(l Limits) error {
	if err := ValidateName(s.Name); err != nil {
		return err
	}
	if s.CPUs < 1 {
		return fmt.Errorf("invalid --cpus %d: a machine needs at least 1 CPU", s.CPUs)
	}
	if l.HostCPUs > 0 && s.CPUs > l.HostCPUs {
		return fmt.Errorf("invalid --cpus %d: this host has %d CPUs", s.CPUs, l.HostCPUs)
	}
	if s.MemoryMiB < 256 {
		return fmt.Errorf("invalid --memory %dMiB: a machine needs at least 256MiB", s.MemoryMiB)
	}
	if l.HostMemoryMiB > 0 && s.MemoryMiB > l.HostMemoryMiB {
		return fmt.Errorf("invalid --memory %dMiB: this host has only %dMiB", s.MemoryMiB, l.HostMemoryMiB)
	}
	if s.DiskGiB < 2 || s.DiskGiB > 64*1024 {
		return fmt.Errorf("invalid --disk-size %dGiB: use between 2GiB and 64TiB", s.DiskGiB)
	}
	switch s.Engine {
	case EngineDocker, EnginePodman:
	default:
		return fmt.Errorf("invalid --engine %q: use docker or podman", s.Engine)
	}
	switch s.ShareType {
	case "", "9p", "virtiofs", "9p-transport":
	default:
		return fmt.Errorf("invalid --share-type %q: use 9p, virtiofs or 9p-transport", s.ShareType)
	}
	switch s.MemoryReclaim {
	case "", "balloon", "free-page-reporting", "dynamic-memory", "off":
	default:
		return fmt.Errorf("invalid --memory-reclaim %q: use balloon, free-page-reporting, dynamic-memory or off (or leave it to the backend)", s.MemoryReclaim)
	}
	if s.Kubernetes {
		if s.Engine != EngineDocker {
			return fmt.Errorf("invalid --kubernetes with --engine %s: Kubernetes runs beside docker only (podman is not supported yet)", s.Engine)
		}
		if s.MemoryMiB < KubernetesMinMemoryMiB {
			return fmt.Errorf("invalid --kubernetes with --memory %dMiB: Kubernetes needs at least %dMiB", s.MemoryMiB, KubernetesMinMemoryMiB)
		}
	}
	if s.NetworkGroup != "" && !nameRE.MatchString(s.NetworkGroup) {
		return fmt.Errorf("invalid --network-group %q: use 1-30 characters a-z, 0-9, '-', '_' or '.', starting with a letter or digit", s.NetworkGroup)
	}
	seen := map[string]bool{}
	for _, m := range s.Mounts {
		if !filepath.IsAbs(m.HostPath) && !isWindowsAbs(m.HostPath) {
			return fmt.Errorf("invalid mount %q: the host path must be absolute", m.HostPath)
		}
		if !strings.HasPrefix(m.GuestPath, "/") {
			return fmt.Errorf("invalid mount %q: the guest path %q must be absolute", m.HostPath, m.GuestPath)
		}
		if seen[m.GuestPath] {
			return fmt.Errorf("invalid mount %q: guest path %q is used twice", m.HostPath, m.GuestPath)
		}
		seen[m.GuestPath] = true
	}
	return nil
}

func isWindowsAbs(p string) bool {
	letter := len(p) >= 3 && ('a' <= p[0]|0x20 && p[0]|0x20 <= 'z')
	return letter && p[1] == ':' && (p[2] == '\\' || p[2] == '/')
}

// ParseMount parses HOST[:GUEST][:ro]. A Windows drive letter is part of HOST.
func ParseMount(s string) (Mount, error) {
	drive := ""
	if isWindowsAbs(s) {
		drive, s = s[:2], s[2:]
	}
	parts := strings.Split(s, ":")
	m := Mount{HostPath: drive + parts[0]}
	rest := parts[1:]
	if n := len(rest); n > 0 && (rest[n-1] == "ro" || rest[n-1] == "rw") {
		m.ReadOnly = rest[n-1] == "ro"
		rest = rest[:n-1]
	}
	switch len(rest) {
	case 0:
		m.GuestPath = GuestPathFor(m.HostPath)
	case 1:
		m.GuestPath = rest[0]
	default:
		return Mount{}, fmt.Errorf("invalid --mount %q: want HOST[:GUEST][:ro]", s)
	}
	if m.HostPath == "" {
		return Mount{}, fmt.Errorf("invalid --mount %q: the host path is empty", s)
	}
	if drive == "" {
		// ~/src means what the shell would have made of it unquoted; a relative path is
		// refused, since what it is relative to is not what the user sees later.
		if sub, ok := strings.CutPrefix(m.HostPath, "~/"); ok || m.HostPath == "~" {
			home, err := os.UserHomeDir()
			if err != nil {
				return Mount{}, fmt.Errorf("invalid --mount %q: %w", s, err)
			}
			m.HostPath = filepath.Join(home, sub)
			if len(rest) == 0 { // no GUEST given: the same path in the guest
				m.GuestPath = GuestPathFor(m.HostPath)
			}
		}
		if !filepath.IsAbs(m.HostPath) {
			return Mount{}, fmt.Errorf("invalid --mount %q: the host path must be absolute", s)
		}
		m.HostPath = filepath.Clean(m.HostPath)
	}
	return m, nil
}

// GuestPathFor is where a host folder appears in the guest when the user does not say:
// the same path on Unix hosts, /mnt/c/... for a Windows drive path.
func GuestPathFor(host string) string {
	if isWindowsAbs(host) {
		rest := strings.ReplaceAll(host[2:], `\`, "/")
		return "/mnt/" + strings.ToLower(host[:1]) + strings.TrimSuffix(rest, "/")
	}
	return filepath.ToSlash(filepath.Clean(host))
}

// ParseSize parses sizes such as 4096, 4096M, 4G, 2GiB into MiB.
func ParseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "IB"), "B")
	mult := int64(1)
	switch {
	case strings.HasSuffix(t, "M"):
		t = strings.TrimSuffix(t, "M")
	case strings.HasSuffix(t, "G"):
		mult, t = 1024, strings.TrimSuffix(t, "G")
	case strings.HasSuffix(t, "T"):
		mult, t = 1024*1024, strings.TrimSuffix(t, "T")
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid size %q: use a number of MiB or a suffix such as 4G", s)
	}
	if n > (1<<50)/mult {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return n * mult, nil
}

// Load reads a spec file, refusing unknown schema versions.
func Load(path string) (*Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("machine config %s is corrupt: %w", path, err)
	}
	if s.SchemaVersion > SchemaVersion {
		return nil, fmt.Errorf("machine config %s has schema version %d; this skiff understands up to %d: upgrade skiff", path, s.SchemaVersion, SchemaVersion)
	}
	return &s, nil
}

// Save writes the spec atomically: readers see the old file or the new one, never half.
func (s *Spec) Save(path string) error {
	s.SchemaVersion = SchemaVersion
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'), 0o600)
}
