package machine

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/skiff-dev/skiff/forward/transport"
	"github.com/skiff-dev/skiff/machine/agentapi"
	"github.com/skiff-dev/skiff/vmm"
)

// Create makes a machine's directory: keys, secret, an empty sparse data disk and the
// config, which is written last so a half-made machine never lists as existing.
func (h Home) Create(s *Spec) (err error) {
	d := h.Dir(s.Name)
	if d.Exists() {
		return exists(s.Name)
	}
	if err := os.MkdirAll(h.machinesDir(), 0o700); err != nil {
		return err
	}
	// Mkdir, not MkdirAll: of two inits at once only one makes the folder, and the
	// clean-up below only ever removes a folder this call made.
	if err := os.Mkdir(d.Path, 0o700); errors.Is(err, fs.ErrExist) {
		return &Error{Name: s.Name, Class: ErrExists, Detail: "is being created by another command, or a failed init left its folder",
			Hint: "if no init is running, remove it with: skiff machine rm" + nameSuffix(s.Name)}
	} else if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(d.Path)
		}
	}()
	secret, err := transport.NewSecret()
	if err != nil {
		return err
	}
	if err := os.WriteFile(d.File(FileSecret), secret, 0o600); err != nil {
		return err
	}
	if err := writeKeyPair(d.File(FileSSHKey), "skiff@"+s.Name); err != nil {
		return err
	}
	if err := writeKeyPair(d.File(FileHostKey), "skiff-host@"+s.Name); err != nil {
		return err
	}
	if err := ResizeDataDisk(d, s.DiskGiB); err != nil {
		return err
	}
	return s.Save(d.File(FileConfig))
}

// ResizeDataDisk creates or grows the sparse data disk; the guest grows its filesystem at
// the next boot. Shrinking would destroy data, so it is refused.
func ResizeDataDisk(d Dir, gib int64) error {
	p := d.File(FileDataDisk)
	want := gib << 30
	if st, err := os.Stat(p); err == nil && st.Size() > want {
		return fmt.Errorf("the data disk is %dGiB; it cannot shrink to %dGiB", st.Size()>>30, gib)
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(want); err != nil {
		return fmt.Errorf("size the data disk: %w", err)
	}
	return nil
}

func writeKeyPair(path, comment string) error {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return err
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return err
	}
	line := append(bytes.TrimSuffix(ssh.MarshalAuthorizedKey(sp), []byte("\n")), " "+comment+"\n"...)
	return os.WriteFile(path+".pub", line, 0o644)
}

// State is a machine's status as users see it.
type State string

const (
	StateStopped  State = "stopped"
	StateStarting State = "starting"
	StateRunning  State = "running"
	StateStopping State = "stopping"
	StateCrashed  State = "crashed"
)

// Status is computed on every read from the agent lock, the pid file and the control API.
type Status struct {
	State  State           `json:"state"`
	Reason string          `json:"reason,omitempty"`
	Agent  *agentapi.State `json:"agent,omitempty"`
}

// Status computes the machine's status now. The agent holds its lock for its whole life
// and the OS drops it on any death, so a dead agent can never read as running.
func (d Dir) Status(ctx context.Context) Status {
	if !Held(d.File(FileAgentLock)) {
		if _, err := os.Stat(d.File(FileAgentPID)); err == nil {
			return Status{State: StateCrashed, Reason: "the host agent exited without a clean stop (see `skiff machine logs " + d.Name + "`)"}
		}
		return Status{State: StateStopped}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := agentapi.NewClient(d.Sock(SockControl)).State(ctx)
	if err != nil {
		return Status{State: StateStarting, Reason: "the host agent is up; its control API does not answer yet"}
	}
	return Status{State: State(st.Phase), Agent: st}
}

// RemoveOptions say what else a removal undoes.
type RemoveOptions struct {
	// Backend is the machine's; what it made outside the machine's directory (a WSL
	// distro, a Hyper-V VM) goes first (vmm.Remover).
	Backend vmm.Backend
	// Warn hears what was left in place on purpose: something the backend did not make.
	Warn func(string)
}

// Remove deletes a machine: the backend's artifacts, then its directories. The caller
// makes sure it is not running. A backend that fails to remove its part leaves the
// machine whole, so that rm can be run again.
func (h Home) Remove(ctx context.Context, name string, o RemoveOptions) error {
	d := h.Dir(name)
	if !d.Exists() {
		if _, err := os.Stat(d.Path); errors.Is(err, fs.ErrNotExist) {
			return NotFound(name)
		}
	}
	if r, ok := o.Backend.(vmm.Remover); ok {
		s, err := d.Spec()
		if err != nil {
			s = &Spec{Name: name} // a machine whose init stopped halfway
		}
		err = r.Remove(ctx, d.VMConfig(s))
		switch {
		case errors.Is(err, vmm.ErrNotOwned):
			if o.Warn != nil {
				o.Warn(err.Error())
			}
		case err != nil:
			return fmt.Errorf("remove machine %q: %w", name, err)
		}
	}
	if err := os.RemoveAll(d.Run); err != nil {
		return err
	}
	return os.RemoveAll(d.Path)
}

// VMConfig is the part of a backend's vmm.Config that names the machine: enough for the
// backend to find what it made for it.
func (d Dir) VMConfig(s *Spec) vmm.Config {
	return vmm.Config{Name: s.Name, Dir: d.Path, RunDir: d.Run, Arch: s.Arch(), CPUs: s.CPUs, MemoryMiB: s.MemoryMiB}
}
