// Package winexectest has fakes of the OS tools behind winexec for tests on any OS.
package winexectest

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"unicode/utf16"

	"github.com/skiff-dev/skiff/vmm"
	"github.com/skiff-dev/skiff/vmm/winexec"
)

// Call is one recorded command.
type Call struct {
	Name string
	Args []string
}

func (c Call) String() string { return c.Name + " " + strings.Join(c.Args, " ") }

// Result is what a faked command returns.
type Result struct {
	Stdout, Stderr []byte
	Err            error
}

// Fake records every command and answers through its handlers, which tests write as
// small simulations of the tool (a distro list, a VM state).
type Fake struct {
	// Run answers Runner calls. Nil fails every call.
	RunFunc func(c Call) Result
	// SpawnFunc answers Spawner calls. Nil fails every call.
	SpawnFunc func(c Call, o winexec.SpawnOptions) (winexec.Process, error)

	mu    sync.Mutex
	calls []Call
}

// Run implements winexec.Runner.
func (f *Fake) Run(ctx context.Context, name string, args ...string) ([]byte, []byte, error) {
	c := Call{name, append([]string(nil), args...)}
	f.record(c)
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if f.RunFunc == nil {
		return nil, nil, fmt.Errorf("fake: unexpected command %s", c)
	}
	r := f.RunFunc(c)
	return r.Stdout, r.Stderr, r.Err
}

// Spawn implements winexec.Spawner.
func (f *Fake) Spawn(ctx context.Context, o winexec.SpawnOptions) (winexec.Process, error) {
	c := Call{o.Name, append([]string(nil), o.Args...)}
	f.record(c)
	if f.SpawnFunc == nil {
		return nil, fmt.Errorf("fake: unexpected spawn %s", c)
	}
	return f.SpawnFunc(c, o)
}

func (f *Fake) record(c Call) {
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
}

// Calls returns the commands run so far, as "name arg arg".
func (f *Fake) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, len(f.calls))
	for i, c := range f.calls {
		out[i] = c.String()
	}
	return out
}

// Reset forgets the recorded calls.
func (f *Fake) Reset() {
	f.mu.Lock()
	f.calls = nil
	f.mu.Unlock()
}

// ExitError is a non-zero exit, as exec.ExitError prints it.
type ExitError int

func (e ExitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// UTF16 encodes s as wsl.exe writes it: UTF-16LE, no BOM, CRLF line ends.
func UTF16(s string) []byte {
	s = strings.ReplaceAll(s, "\n", "\r\n")
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, v := range u {
		binary.LittleEndian.PutUint16(b[2*i:], v)
	}
	return b
}

// Process is a fake long-running command that runs until Exit or Kill.
type Process struct {
	exit vmm.Exit
}

// NewProcess starts a fake process.
func NewProcess() *Process { return &Process{} }

// Exit ends the process with err (nil: exit 0).
func (p *Process) Exit(err error) { p.exit.Finish(err) }

// Wait implements winexec.Process.
func (p *Process) Wait() error { return p.exit.Wait(context.Background()) }

// Kill implements winexec.Process.
func (p *Process) Kill() error {
	p.Exit(ExitError(1))
	return nil
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool { return p.exit.Exited() }

// Registry is an in-memory registry. With DenyWrites it acts as a non-elevated process.
type Registry struct {
	DenyWrites bool

	mu   sync.Mutex
	keys map[string]map[string]string // lower-cased path -> values
}

func (r *Registry) init() {
	if r.keys == nil {
		r.keys = map[string]map[string]string{}
	}
}

// SubKeys implements winexec.Registry.
func (r *Registry) SubKeys(path string) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	prefix := strings.ToLower(path) + `\`
	seen := map[string]bool{}
	var out []string
	for k := range r.keys {
		if rest, ok := strings.CutPrefix(k, prefix); ok {
			name, _, _ := strings.Cut(rest, `\`)
			if !seen[name] {
				seen[name] = true
				out = append(out, name)
			}
		}
	}
	return out, nil
}

// KeyExists implements winexec.Registry.
func (r *Registry) KeyExists(path string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.keys[strings.ToLower(path)]
	return ok, nil
}

// SetString implements winexec.Registry.
func (r *Registry) SetString(path, name, value string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.DenyWrites {
		return fmt.Errorf("open %s: %w", path, winexec.ErrAccessDenied)
	}
	r.init()
	k := strings.ToLower(path)
	if r.keys[k] == nil {
		r.keys[k] = map[string]string{}
	}
	r.keys[k][name] = value
	return nil
}

// Value returns a value set earlier.
func (r *Registry) Value(path, name string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.keys[strings.ToLower(path)][name]
	return v, ok
}

// AddKey creates an empty key, as something else on the machine would have.
func (r *Registry) AddKey(path string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.init()
	if r.keys[strings.ToLower(path)] == nil {
		r.keys[strings.ToLower(path)] = map[string]string{}
	}
}
