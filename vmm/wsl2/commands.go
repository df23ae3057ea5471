package wsl2

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/skiff-dev/skiff/vmm"
	"github.com/skiff-dev/skiff/vmm/winexec"
)

// The wsl.exe command lines, kept pure so tests pin them exactly.

func statusArgs() []string                { return []string{"--status"} }
func listArgs() []string                  { return []string{"--list", "--quiet"} }
func terminateArgs(name string) []string  { return []string{"--terminate", name} }
func unregisterArgs(name string) []string { return []string{"--unregister", name} }

func importArgs(name, dir, tar string) []string {
	return []string{"--import", name, dir, tar, "--version", "2"}
}

func bootArgs(name string, command ...string) []string {
	return append([]string{"-d", name, "-u", "root", "--"}, command...)
}

// AgentCommand is what runs in the distro for the machine's life; seedPath is the seed
// file where the distro sees it (GuestPath), empty for none. The QEMU stand-in for WSL
// (vmm/qemu, backend qemu-wsl) runs the same command.
func AgentCommand(seedPath string, network NetworkMode) []string {
	c := []string{AgentPath, "boot-wsl"}
	if seedPath != "" {
		c = append(c, "--seed", seedPath)
	}
	return append(c, "--network", string(network))
}

// parseList reads `wsl --list --quiet`: one distro per line.
func parseList(out string) []string {
	var ds []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			ds = append(ds, l)
		}
	}
	return ds
}

// GuestPath maps a Windows path to where WSL mounts it: C:\Users\me -> /mnt/c/Users/me.
func GuestPath(p string) (string, error) {
	p = strings.ReplaceAll(p, "/", `\`)
	if len(p) < 2 || p[1] != ':' || !isLetter(p[0]) {
		return "", fmt.Errorf("%q is not on a drive letter; WSL reaches only drive paths (C:\\...) through /mnt", p)
	}
	rest := strings.TrimPrefix(p[2:], `\`)
	g := "/mnt/" + strings.ToLower(p[:1])
	if rest != "" {
		g += "/" + strings.ReplaceAll(filepath.ToSlash(rest), `\`, "/")
	}
	return g, nil
}

func isLetter(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }

// Errors a caller may test for with errors.Is. Each message says what to do.
var (
	ErrNotInstalled = errors.New("WSL is not installed: open a terminal with \"Run as administrator\", run `wsl --install --no-distribution`, and restart Windows")
	ErrWSL1Only     = errors.New("WSL 2 is not available on this computer, only WSL 1: enable the \"Virtual Machine Platform\" Windows feature (administrator terminal: `wsl --install --no-distribution`, or `dism.exe /online /enable-feature /featurename:VirtualMachinePlatform /all /norestart`), turn on virtualization (VT-x/AMD-V/SVM) in the firmware settings, restart Windows, then run `wsl --update`")
	ErrDistroExists = errors.New("a WSL distro with this machine's name already exists")
	ErrNeedAdmin    = vmm.ErrNeedAdmin
)

func distroExistsError(name string) error {
	return fmt.Errorf("wsl2: %w: %s was not created by this Skiff machine. If it is a leftover of a removed machine, delete it with `wsl --unregister %s` (this erases its files); otherwise choose another machine name",
		ErrDistroExists, name, name)
}

// classify turns a failed wsl.exe run into an error that says what to do. name is the
// distro the command was about, if any.
func classify(err error, out, name string) error {
	lo := strings.ToLower(out)
	switch {
	case winexec.IsNotFound(err):
		return fmt.Errorf("wsl2: %w", ErrNotInstalled)
	case strings.Contains(lo, "already exists") || strings.Contains(lo, "error_already_exists"):
		return distroExistsError(name)
	case wsl1Only(lo):
		return fmt.Errorf("wsl2: %w\nwsl.exe said: %s", ErrWSL1Only, out)
	case strings.Contains(lo, "subsystem for linux is not installed") || strings.Contains(lo, "optional component is not enabled") ||
		strings.Contains(lo, "wsl_e_wsl_optional_component_required"):
		return fmt.Errorf("wsl2: %w", ErrNotInstalled)
	case strings.Contains(lo, "requires elevation") || strings.Contains(lo, "e_accessdenied") || strings.Contains(lo, "access is denied"):
		return fmt.Errorf("wsl2: %w: wsl.exe was refused access (%s). Run the command again from a terminal opened with \"Run as administrator\", or keep the machine directory in a folder your user owns",
			ErrNeedAdmin, firstLine(out))
	case strings.Contains(lo, "invalid command line option") || strings.Contains(lo, "unrecognized option"):
		return fmt.Errorf("wsl2: this wsl.exe is too old for Skiff: run `wsl --update` (or install WSL from the Microsoft Store): %s", firstLine(out))
	}
	if out == "" {
		return fmt.Errorf("wsl2: wsl.exe: %w", err)
	}
	return fmt.Errorf("wsl2: wsl.exe: %w: %s", err, out)
}

// wsl1Only recognises the outputs of a host without the Virtual Machine Platform or
// hardware virtualization, where only WSL 1 distros work.
func wsl1Only(lo string) bool {
	for _, s := range []string{
		"virtual machine platform",
		"hcs_e_hyperv_not_installed",
		"wsl 2 requires an update to its kernel component",
		"please enable virtualization",
		"virtualization is enabled in the bios",
	} {
		if strings.Contains(lo, s) {
			return true
		}
	}
	return false
}

// checkStatus reads a successful `wsl --status`.
func checkStatus(out string) error {
	lo := strings.ToLower(out)
	if wsl1Only(lo) {
		return fmt.Errorf("wsl2: %w\nwsl.exe said: %s", ErrWSL1Only, out)
	}
	return nil
}

// noDistros: `wsl --list` fails when nothing is registered, which is not an error here.
func noDistros(out string) bool {
	lo := strings.ToLower(out)
	return strings.Contains(lo, "has no installed distributions") || strings.Contains(lo, "wsl_e_default_distro_not_found")
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(l)
}
