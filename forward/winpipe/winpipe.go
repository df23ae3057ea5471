// Package winpipe serves the engine API on a Windows named pipe (\\.\pipe\docker_engine or
// a per-machine one) that only the current user can open.
package winpipe

import (
	"errors"
	"fmt"
	"regexp"
)

// ErrWindowsOnly is returned on every other OS.
var ErrWindowsOnly = errors.New("named pipes are Windows only")

var sidRE = regexp.MustCompile(`^S-1-[0-9]+(-[0-9]+)+$`)

// SDDL is the security descriptor of a pipe only sid may use: a protected DACL (P: no
// inherited entries) with one entry granting that user full access. Anyone else, other
// users and services alike, is denied: the engine API is root in the VM.
func SDDL(sid string) (string, error) {
	if !sidRE.MatchString(sid) {
		return "", fmt.Errorf("winpipe: %q is not a SID", sid)
	}
	return "D:P(A;;GA;;;" + sid + ")", nil
}
