package hostenv

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/skiff-dev/skiff/installer/internal/probe"
)

// Well-known engine endpoints that tools ignoring docker contexts use.
const (
	DockerSocketPath = "/var/run/docker.sock"
	DockerEnginePipe = `\\.\pipe\docker_engine`
)

// EndpointState is what currently occupies a well-known endpoint.
type EndpointState string

const (
	EndpointFree        EndpointState = "free"         // nothing there
	EndpointOurs        EndpointState = "ours"         // a link to one of Skiff's sockets
	EndpointForeignLink EndpointState = "foreign-link" // a link to somewhere else
	EndpointForeignLive EndpointState = "foreign-live" // a live socket or pipe that is not ours
	EndpointStale       EndpointState = "stale"        // a socket file nobody listens on
	EndpointOther       EndpointState = "other"        // a file or directory that is no socket
)

// EndpointStatus describes a well-known endpoint.
type EndpointStatus struct {
	Path   string
	State  EndpointState
	Target string // the link target, for links
	Detail string
}

// ErrEndpointBusy is wrapped by every refusal to take over an endpoint.
var ErrEndpointBusy = errors.New("endpoint is owned by something else")

// EndpointBusyError explains who holds an endpoint and how the user can free it.
type EndpointBusyError struct {
	Status EndpointStatus
	Fix    string
}

func (e *EndpointBusyError) Error() string {
	return fmt.Sprintf("%s is not Skiff's: %s; %s", e.Status.Path, e.Status.Detail, e.Fix)
}

// Unwrap lets errors.Is(err, ErrEndpointBusy) match.
func (e *EndpointBusyError) Unwrap() error { return ErrEndpointBusy }

// SocketLinkOptions configure the well-known socket link.
type SocketLinkOptions struct {
	// Path is the well-known socket; empty means DockerSocketPath.
	Path string
	// Target is the machine's engine socket the link points at.
	Target string
	// IsOurs says whether an existing link target is one of Skiff's sockets (say, another
	// machine's); nil accepts only Target itself.
	IsOurs func(target string) bool
	// Consented must be true: the link changes what every docker tool on the host talks
	// to, so it is only made when the user asked for it.
	Consented bool
	// Privilege says how to write into a root-owned directory.
	Privilege Privilege
	// Runner runs sudo; nil runs it for real.
	Runner Runner
	// Ping asks whether a socket is a live engine; nil uses the real probe.
	Ping func(ctx context.Context, path string) error
}

// Privilege is how a root-owned location is written.
type Privilege string

const (
	PrivilegeNone Privilege = ""     // fail with a hint when permission is denied
	PrivilegeSudo Privilege = "sudo" // retry through sudo, which asks for the password
)

func (o SocketLinkOptions) SocketPath() string {
	if o.Path == "" {
		return DockerSocketPath
	}
	return o.Path
}

func (o SocketLinkOptions) ours(target string) bool {
	if filepath.Clean(target) == filepath.Clean(o.Target) {
		return true
	}
	return o.IsOurs != nil && o.IsOurs(target)
}

func (o SocketLinkOptions) ping(ctx context.Context, path string) error {
	if o.Ping != nil {
		return o.Ping(ctx, path)
	}
	return probe.PingUnix(ctx, path)
}

// InspectSocket says what occupies the well-known socket path.
func InspectSocket(ctx context.Context, o SocketLinkOptions) (EndpointStatus, error) {
	p := o.SocketPath()
	st := EndpointStatus{Path: p}
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		st.State, st.Detail = EndpointFree, "nothing is there"
		return st, nil
	case err != nil:
		return st, fmt.Errorf("inspect %s: %w", p, err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		t, err := os.Readlink(p)
		if err != nil {
			return st, fmt.Errorf("inspect %s: %w", p, err)
		}
		if !filepath.IsAbs(t) {
			t = filepath.Join(filepath.Dir(p), t)
		}
		st.Target = t
		if o.ours(t) {
			st.State, st.Detail = EndpointOurs, "links to Skiff's socket "+t
			return st, nil
		}
		st.State = EndpointForeignLink
		if perr := o.ping(ctx, t); perr == nil {
			st.Detail = "it links to " + t + ", a live engine"
		} else {
			st.Detail = "it links to " + t + " (not answering now)"
		}
		return st, nil
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		st.State, st.Detail = EndpointOther, "it is a "+fileKind(fi.Mode())+", not a socket"
		return st, nil
	}
	perr := o.ping(ctx, p)
	switch {
	case perr == nil:
		st.State, st.Detail = EndpointForeignLive, "another container engine is listening on it"
	case errors.Is(perr, probe.ErrNoListener):
		st.State, st.Detail = EndpointStale, "it is a socket file nobody listens on (an engine that is not running)"
	default:
		st.State, st.Detail = EndpointForeignLive, "another process is listening on it ("+perr.Error()+")"
	}
	return st, nil
}

func fileKind(m fs.FileMode) string {
	if m.IsDir() {
		return "directory"
	}
	if m.IsRegular() {
		return "regular file"
	}
	return "special file"
}

// Busy turns a status that is not ours into an error that says how to resolve it.
func Busy(st EndpointStatus) error {
	var fix string
	switch st.State {
	case EndpointForeignLink:
		fix = fmt.Sprintf("quit the engine it belongs to (e.g. Docker Desktop, Rancher Desktop, Colima) and remove the link with `sudo rm %s`, or keep it and use `docker context use skiff` instead", st.Path)
	case EndpointForeignLive:
		fix = fmt.Sprintf("stop that engine (e.g. `sudo systemctl stop docker.socket docker.service`, or quit Docker Desktop) so it releases %s, or keep it and use `docker context use skiff` instead", st.Path)
	case EndpointStale:
		fix = fmt.Sprintf("if no other engine will use it again, remove it with `sudo rm %s` and retry", st.Path)
	default:
		fix = "move it out of the way yourself if it is not needed, or use `docker context use skiff` instead"
	}
	return &EndpointBusyError{Status: st, Fix: fix}
}

// LinkSocket points the well-known socket at the machine's engine socket. It never
// replaces anything that is not already Skiff's.
func LinkSocket(ctx context.Context, o SocketLinkOptions) error {
	if !o.Consented {
		return errors.New("linking the well-known docker socket needs the user's explicit consent")
	}
	if o.Target == "" || !filepath.IsAbs(o.Target) {
		return fmt.Errorf("link target %q must be an absolute socket path", o.Target)
	}
	st, err := InspectSocket(ctx, o)
	if err != nil {
		return err
	}
	p := o.SocketPath()
	switch st.State {
	case EndpointFree:
		// Symlink fails if something appeared since we looked: no window to clobber it.
		err := os.Symlink(o.Target, p)
		if err == nil {
			return nil
		}
		if !errors.Is(err, fs.ErrPermission) || o.Privilege != PrivilegeSudo {
			return permissionHint(fmt.Errorf("link %s: %w", p, err))
		}
		_, err = RunnerOr(o.Runner).Run(ctx, "sudo", "ln", "-s", "--", o.Target, p)
		return err
	case EndpointOurs:
		if st.Target == filepath.Clean(o.Target) {
			return nil
		}
		// Another of our machines: replace the link atomically (rename over it).
		tmp := filepath.Join(filepath.Dir(p), "."+filepath.Base(p)+".skiff-new")
		_ = os.Remove(tmp)
		err := os.Symlink(o.Target, tmp)
		if err == nil {
			if err = os.Rename(tmp, p); err != nil {
				_ = os.Remove(tmp)
			}
			return err
		}
		if !errors.Is(err, fs.ErrPermission) || o.Privilege != PrivilegeSudo {
			return permissionHint(fmt.Errorf("link %s: %w", p, err))
		}
		_, err = RunnerOr(o.Runner).Run(ctx, "sudo", "ln", "-sfn", "--", o.Target, p)
		return err
	}
	return Busy(st)
}

// UnlinkSocket removes the well-known socket link if, and only if, it is Skiff's.
func UnlinkSocket(ctx context.Context, o SocketLinkOptions) error {
	st, err := InspectSocket(ctx, o)
	if err != nil {
		return err
	}
	switch st.State {
	case EndpointFree:
		return nil
	case EndpointOurs:
	default:
		return fmt.Errorf("leaving %s alone: %w", st.Path, Busy(st))
	}
	err = os.Remove(st.Path)
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if !errors.Is(err, fs.ErrPermission) || o.Privilege != PrivilegeSudo {
		return permissionHint(fmt.Errorf("remove %s: %w", st.Path, err))
	}
	_, err = RunnerOr(o.Runner).Run(ctx, "sudo", "rm", "-f", "--", st.Path)
	return err
}

func permissionHint(err error) error {
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("%w (the directory is root-owned: rerun with --sudo)", err)
	}
	return err
}

// PipeOptions configure claiming the Windows well-known pipe.
type PipeOptions struct {
	// Name is the pipe; empty means DockerEnginePipe.
	Name string
	// Exists reports whether a pipe of that name is open; nil uses the OS.
	Exists func(name string) (bool, error)
	// Serve listens on the pipe and relays to the machine's engine until ctx ends. It is
	// the forwarder's job; it must create the pipe as its first instance so that a pipe
	// created by another engine after our check still makes it fail.
	Serve func(ctx context.Context, name string) error
}

// DecidePipe says whether Skiff may serve the Windows well-known pipe: only when no one
// else has it.
func DecidePipe(o PipeOptions) (EndpointStatus, error) {
	name := o.Name
	if name == "" {
		name = DockerEnginePipe
	}
	exists := o.Exists
	if exists == nil {
		exists = pipeExists
	}
	st := EndpointStatus{Path: name}
	on, err := exists(name)
	if err != nil {
		return st, fmt.Errorf("inspect %s: %w", name, err)
	}
	if !on {
		st.State, st.Detail = EndpointFree, "no engine holds it"
		return st, nil
	}
	st.State, st.Detail = EndpointForeignLive, "another engine (Docker Desktop, Rancher Desktop or another Skiff machine) is serving it"
	return st, &EndpointBusyError{Status: st, Fix: "quit that engine to let Skiff take the pipe, or use `docker context use skiff` instead"}
}

// ClaimPipe serves the well-known pipe when it is free, else returns an
// EndpointBusyError without touching it.
func ClaimPipe(ctx context.Context, o PipeOptions) error {
	st, err := DecidePipe(o)
	if err != nil {
		return err
	}
	if o.Serve == nil {
		return errors.New("no pipe listener configured")
	}
	return o.Serve(ctx, st.Path)
}

// IsSkiffPath reports whether target lies in one of Skiff's socket directories.
func IsSkiffPath(target string, roots ...string) bool {
	t := filepath.Clean(target)
	for _, r := range roots {
		if r == "" {
			continue
		}
		r = filepath.Clean(r)
		if t == r || strings.HasPrefix(t, r+string(filepath.Separator)) {
			return true
		}
	}
	return false
}
