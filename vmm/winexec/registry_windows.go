package winexec

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"
)

// WindowsRegistry is the real registry.
type WindowsRegistry struct{}

func splitRoot(path string) (registry.Key, string, error) {
	root, rest, _ := strings.Cut(path, `\`)
	switch strings.ToUpper(root) {
	case "HKLM", "HKEY_LOCAL_MACHINE":
		return registry.LOCAL_MACHINE, rest, nil
	case "HKCU", "HKEY_CURRENT_USER":
		return registry.CURRENT_USER, rest, nil
	}
	return 0, "", fmt.Errorf("registry path %q: unknown root", path)
}

func wrapAccess(err error) error {
	if errors.Is(err, windows.ERROR_ACCESS_DENIED) {
		return fmt.Errorf("%w: %w", ErrAccessDenied, err)
	}
	return err
}

// SubKeys implements Registry.
func (WindowsRegistry) SubKeys(path string) ([]string, error) {
	root, sub, err := splitRoot(path)
	if err != nil {
		return nil, err
	}
	k, err := registry.OpenKey(root, sub, registry.ENUMERATE_SUB_KEYS)
	if errors.Is(err, registry.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, wrapAccess(err)
	}
	defer k.Close()
	return k.ReadSubKeyNames(-1)
}

// KeyExists implements Registry.
func (WindowsRegistry) KeyExists(path string) (bool, error) {
	root, sub, err := splitRoot(path)
	if err != nil {
		return false, err
	}
	k, err := registry.OpenKey(root, sub, registry.QUERY_VALUE)
	if errors.Is(err, registry.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, wrapAccess(err)
	}
	k.Close()
	return true, nil
}

// SetString implements Registry.
func (WindowsRegistry) SetString(path, name, value string) error {
	root, sub, err := splitRoot(path)
	if err != nil {
		return err
	}
	k, _, err := registry.CreateKey(root, sub, registry.SET_VALUE)
	if err != nil {
		return wrapAccess(err)
	}
	defer k.Close()
	return wrapAccess(k.SetStringValue(name, value))
}

// Elevated reports whether this process runs as administrator.
func Elevated() bool {
	return windows.GetCurrentProcessToken().IsElevated()
}
