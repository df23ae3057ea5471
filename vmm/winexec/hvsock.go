package winexec

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/skiff-dev/skiff/vmm"
)

// GCSRoot is where Hyper-V looks up which hvsock services may talk to the host. A host
// listener on a service GUID with no entry here never sees a guest connection.
const GCSRoot = `HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Virtualization\GuestCommunicationServices`

// ServiceGUID is the hvsock service ID that a Linux guest's AF_VSOCK port maps to:
// the port in the first field of a fixed template (the same as go-winio's VsockServiceID).
func ServiceGUID(port uint32) string {
	return fmt.Sprintf("%08x-facb-11e6-bd58-64006a7986d3", port)
}

// Service is one hvsock port the host uses.
type Service struct {
	Port uint32
	Name string // shown in the registry as ElementName
}

// ErrNeedAdmin means a step has to run from an elevated (administrator) terminal.
var ErrNeedAdmin = vmm.ErrNeedAdmin

// MissingServices returns the services that have no registry entry yet.
func MissingServices(reg Registry, services []Service) ([]Service, error) {
	var missing []Service
	for _, s := range services {
		ok, err := reg.KeyExists(GCSRoot + `\` + ServiceGUID(s.Port))
		if err != nil {
			return nil, fmt.Errorf("read hvsock registration: %w", err)
		}
		if !ok {
			missing = append(missing, s)
		}
	}
	return missing, nil
}

// RegisterServices creates the registry entries for services. It is the one step that
// needs administrator rights; command names the command the user should run elevated.
func RegisterServices(ctx context.Context, reg Registry, services []Service, command string) error {
	missing, err := MissingServices(reg, services)
	if err != nil {
		return err
	}
	for _, s := range missing {
		key := GCSRoot + `\` + ServiceGUID(s.Port)
		if err := reg.SetString(key, "ElementName", s.Name); err != nil {
			if errors.Is(err, ErrAccessDenied) {
				return fmt.Errorf("register hvsock service %s (port %d): %w: open a terminal with \"Run as administrator\" and run `%s` once",
					s.Name, s.Port, ErrNeedAdmin, command)
			}
			return fmt.Errorf("register hvsock service %s (port %d): %w", s.Name, s.Port, err)
		}
	}
	return nil
}

// RequireServices fails with NotInstalledError when any of services is unregistered.
func RequireServices(reg Registry, services []Service, command string) error {
	missing, err := MissingServices(reg, services)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return NotInstalledError(missing, command)
	}
	return nil
}

// NotInstalledError says the install step has not run yet.
func NotInstalledError(missing []Service, command string) error {
	var names []string
	for _, s := range missing {
		names = append(names, fmt.Sprintf("%s (port %d)", s.Name, s.Port))
	}
	return fmt.Errorf("hvsock services not registered: %s; open a terminal with \"Run as administrator\" and run `%s` once",
		strings.Join(names, ", "), command)
}
