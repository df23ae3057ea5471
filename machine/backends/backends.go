// Package backends is the registry of the hypervisor backends each host OS offers: the
// one place that names concrete vmm packages. The lifecycle (machine.Manager) and the host
// agent get a backend from here by the name a machine's spec records.
package backends

import (
	"fmt"
	"runtime"

	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/vmm"
)

// Lookup returns the backend called name on this OS; "" is the OS's default.
func Lookup(name string) (vmm.Backend, error) {
	if b := lookup(name); b != nil {
		return b, nil
	}
	return nil, unknown(name)
}

// unknown is the error for a backend name this OS does not have: bad input.
type unknown string

func (u unknown) Error() string {
	return fmt.Sprintf("backend %q is not available on %s (%s)", string(u), osName(), hint)
}

func (unknown) Unwrap() error { return machine.ErrInvalid }

// Default is the backend a machine gets when init names none.
func Default() string { return defaultName }

func osName() string {
	switch runtime.GOOS {
	case "darwin":
		return "macOS"
	case "windows":
		return "Windows"
	}
	return "Linux"
}
