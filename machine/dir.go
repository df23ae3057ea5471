package machine

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
)

// Names of the files in a machine's directory. Everything about a machine lives under
// one directory so that rm is a single RemoveAll and nothing leaks elsewhere.
const (
	FileConfig    = "config.json"
	FileDataDisk  = "data.img"
	FileSeedDisk  = "seed.img"
	FileAgentPID  = "agent.pid"
	FileAgentLock = "agent.lock"
	FileStartLock = "start.lock"
	FileAgentLog  = "agent.log"
	FileSerialLog = "serial.log"
	FileVMPID     = "vm.pid"
	FileSSHKey    = "id_ed25519"
	FileHostKey   = "ssh_host_ed25519_key"
	FileSecret    = "secret"
)

// Socket names, kept in a separate short directory (see RunDir).
const (
	SockControl = "ctl.sock"
	SockEngine  = "docker.sock"
	SockNet     = "net.sock"
	SockQMP     = "qmp.sock"
)

// maxSockPath keeps every socket under macOS's 104-byte sun_path limit with room to spare.
const maxSockPath = 100

// Home is Skiff's data directory.
type Home struct{ Root string }

// DefaultHome follows each OS's convention, overridden by SKIFF_HOME (tests use it to stay isolated).
func DefaultHome() (Home, error) {
	if h := os.Getenv("SKIFF_HOME"); h != "" {
		abs, err := filepath.Abs(h)
		return Home{Root: abs}, err
	}
	switch runtime.GOOS {
	case "linux":
		if x := os.Getenv("XDG_DATA_HOME"); x != "" {
			return Home{Root: filepath.Join(x, "skiff")}, nil
		}
		u, err := os.UserHomeDir()
		return Home{Root: filepath.Join(u, ".local", "share", "skiff")}, err
	default:
		// Library/Application Support on macOS, %LocalAppData% on Windows.
		d, err := os.UserConfigDir()
		if runtime.GOOS == "windows" {
			if l := os.Getenv("LOCALAPPDATA"); l != "" {
				d = l
			}
		}
		return Home{Root: filepath.Join(d, "skiff")}, err
	}
}

// CacheDir holds downloaded images, shared by all machines.
func (h Home) CacheDir() string { return filepath.Join(h.Root, "cache") }

func (h Home) machinesDir() string { return filepath.Join(h.Root, "machines") }

// MachinesDir holds a folder for each machine.
func (h Home) MachinesDir() string { return h.machinesDir() }

// Dir returns the directory handle of a machine, whether or not it exists.
func (h Home) Dir(name string) Dir {
	return Dir{Name: name, Path: filepath.Join(h.machinesDir(), name), Run: h.runDir(name)}
}

// runDir is where sockets live. It stays inside Home when the path is short enough and
// otherwise moves to a short per-user temp path derived from Home and the name.
func (h Home) runDir(name string) string {
	d := filepath.Join(h.Root, "run", name)
	if len(d)+len("/"+SockEngine) <= maxSockPath {
		return d
	}
	sum := sha256.Sum256([]byte(h.Root + "\x00" + name))
	return filepath.Join(os.TempDir(), fmt.Sprintf("skiff-%d", os.Getuid()), hex.EncodeToString(sum[:6]))
}

// List returns the names of all machines, sorted.
func (h Home) List() ([]string, error) {
	ents, err := os.ReadDir(h.machinesDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() && ValidateName(e.Name()) == nil {
			if _, err := os.Stat(filepath.Join(h.machinesDir(), e.Name(), FileConfig)); err == nil {
				names = append(names, e.Name())
			}
		}
	}
	sort.Strings(names)
	return names, nil
}

// Dir is one machine's directory.
type Dir struct {
	Name string
	Path string // config, disks, keys, logs
	Run  string // sockets
}

// File returns the path of a file in the machine directory.
func (d Dir) File(name string) string { return filepath.Join(d.Path, name) }

// HomeRoot is the Skiff home the machine belongs to.
func (d Dir) HomeRoot() string { return filepath.Dir(filepath.Dir(d.Path)) }

// Sock returns the path of a socket of this machine.
func (d Dir) Sock(name string) string { return filepath.Join(d.Run, name) }

// Exists reports whether the machine has been initialised.
func (d Dir) Exists() bool {
	_, err := os.Stat(d.File(FileConfig))
	return err == nil
}

// Spec loads the machine's config.
func (d Dir) Spec() (*Spec, error) {
	s, err := Load(d.File(FileConfig))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, NotFound(d.Name)
	}
	return s, err
}

// EnsureRun creates the socket directory, private to the user. In the short fallback
// under the shared temp folder, every folder Skiff makes there must be the user's own and
// private: another user could otherwise make it first and read or swap the sockets.
func (d Dir) EnsureRun() error {
	if parent := filepath.Dir(d.Run); filepath.Dir(parent) == filepath.Clean(os.TempDir()) {
		if err := privateDir(parent); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(d.Run, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(d.Run, 0o700); err != nil {
		return err
	}
	return privateDir(d.Run)
}
