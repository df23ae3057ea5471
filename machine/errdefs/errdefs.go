// Package errdefs holds the classes of failure the lifecycle and the host agent's control
// API share, and maps them to HTTP statuses and back, so that a class survives the wire
// between the agent and its clients: callers decide with errors.Is, never by message.
package errdefs

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/skiff-dev/skiff/vmm"
)

var (
	ErrNotFound = errors.New("does not exist")
	ErrExists   = errors.New("already exists")
	// ErrState: the machine is not in a state the operation accepts (running, stopping,
	// not running).
	ErrState = errors.New("is in the wrong state")
	// ErrBusy: another command is starting or changing the machine right now.
	ErrBusy = errors.New("is busy")
	// ErrInvalid: the request itself is wrong (a bad size, name, mount or service).
	ErrInvalid = errors.New("invalid")
	// ErrUnavailable: the guest did not answer.
	ErrUnavailable = errors.New("the guest did not answer")
)

// ToHTTP is the status that carries err's class.
func ToHTTP(err error) int {
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrExists), errors.Is(err, ErrState), errors.Is(err, ErrBusy):
		return http.StatusConflict
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, vmm.ErrNotSupported):
		return http.StatusNotImplemented
	case errors.Is(err, ErrUnavailable):
		return http.StatusBadGateway
	}
	return http.StatusInternalServerError
}

// FromHTTP turns a failed response's status and message back into an error of its class.
func FromHTTP(status int, msg string) error {
	var class error
	switch status {
	case http.StatusNotFound:
		class = ErrNotFound
	case http.StatusConflict, http.StatusServiceUnavailable:
		class = ErrState
	case http.StatusBadRequest:
		class = ErrInvalid
	case http.StatusNotImplemented:
		class = vmm.ErrNotSupported
	case http.StatusBadGateway:
		class = ErrUnavailable
	default:
		return errors.New(msg)
	}
	return &wireError{msg: msg, class: class}
}

// wireError keeps the agent's own words and the class they came with.
type wireError struct {
	msg   string
	class error
}

func (e *wireError) Error() string { return e.msg }
func (e *wireError) Unwrap() error { return e.class }

// Errorf is an error of class with its own words (no class suffix).
func Errorf(class error, format string, args ...any) error {
	return &wireError{msg: fmt.Sprintf(format, args...), class: class}
}

// As gives err the class as well, keeping its words: a validation error becomes
// ErrInvalid without a prefix.
func As(class, err error) error {
	if err == nil || errors.Is(err, class) {
		return err
	}
	return &classed{err: err, class: class}
}

type classed struct{ err, class error }

func (e *classed) Error() string   { return e.err.Error() }
func (e *classed) Unwrap() []error { return []error{e.err, e.class} }
