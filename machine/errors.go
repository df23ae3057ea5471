package machine

import (
	"fmt"

	"github.com/skiff-dev/skiff/machine/errdefs"
)

// The classes of lifecycle failure (defined in errdefs, which the control API shares).
// Every error the lifecycle returns for one of these wraps the sentinel, so callers decide
// with errors.Is and never by message; the CLI maps them to exit codes in one place.
// Backend classes (vmm.ErrNotSupported, vmm.ErrNeedAdmin) pass through wrapped the same way.
var (
	ErrNotFound = errdefs.ErrNotFound
	ErrExists   = errdefs.ErrExists
	ErrState    = errdefs.ErrState
	ErrBusy     = errdefs.ErrBusy
	ErrInvalid  = errdefs.ErrInvalid
)

// Error is a lifecycle failure of one machine: the class (one of the sentinels above),
// and what to do about it.
type Error struct {
	Name  string
	Class error
	// Detail replaces the class's own words when set, e.g. "is running: stop it first".
	Detail string
	// Hint says how to get past it, e.g. "create it with: skiff machine init dev".
	Hint string
}

func (e *Error) Error() string {
	s := e.Detail
	if s == "" {
		s = e.Class.Error()
	}
	if e.Name != "" {
		s = fmt.Sprintf("machine %q %s", e.Name, s)
	}
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

func (e *Error) Unwrap() error { return e.Class }

// NotFound is the error for a machine name that has no machine.
func NotFound(name string) error {
	return &Error{Name: name, Class: ErrNotFound, Hint: "create it with: skiff machine init" + nameSuffix(name)}
}

func exists(name string) error {
	return &Error{Name: name, Class: ErrExists, Hint: "remove it with: skiff machine rm" + nameSuffix(name)}
}

func wrongState(name string, st State, what string) error {
	return &Error{Name: name, Class: ErrState, Detail: fmt.Sprintf("is %s: %s", st, what)}
}

// nameSuffix is how a command names the machine: nothing for the default one.
func nameSuffix(name string) string {
	if name == DefaultName {
		return ""
	}
	return " " + name
}
