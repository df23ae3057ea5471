package installer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/machine/atomicfile"
)

// Autostart describes starting one machine when the user logs in. It is the one
// description the systemd unit, the launchd agent and the scheduled task are generated
// from; none of them depend on the tray app.
type Autostart struct {
	// Binary is the absolute path of the skiff executable the login hook runs.
	Binary string
	// Machine is the machine to start.
	Machine string
	// Home, when set, is passed as SKIFF_HOME so a non-default data dir is honoured.
	Home string
	// User is the Windows account (DOMAIN\name) whose logon triggers the task.
	// Enable fills it in from the environment when empty.
	User string
}

// GeneratedFile is one generated host file.
type GeneratedFile struct {
	// Path is where the file goes, slash-separated and relative to the user's home
	// directory (Linux, macOS), or the file name handed to schtasks (Windows).
	Path    string
	Mode    fs.FileMode
	Content []byte
}

// AutostartOptions are the environment of Enable and Disable.
type AutostartOptions struct {
	// Runner runs systemctl/launchctl/schtasks; nil runs them for real.
	Runner Runner
	// HomeDir is the user's home directory; empty means os.UserHomeDir.
	HomeDir string
	// ConfigDir overrides $XDG_CONFIG_HOME for the systemd unit directory.
	ConfigDir string
	// UID is the user id for launchctl's gui/UID domain; negative or zero means os.Getuid.
	UID int
	// TempDir receives the task XML handed to schtasks; empty means os.TempDir.
	TempDir string
}

// ErrAutostartUnsupported is returned on platforms without a login hook we know.
var ErrAutostartUnsupported = errors.New("autostart is not supported on this platform")

// Names used for each platform's entry: stable so Disable always finds what Enable made.
func (a Autostart) unitName() string     { return "skiff-machine-" + a.Machine + ".service" }
func (a Autostart) launchdLabel() string { return "dev.skiff.machine." + a.Machine }
func (a Autostart) taskName() string     { return `\Skiff\machine-` + a.Machine }

// startArgs and stopArgs are the commands every platform runs.
func (a Autostart) startArgs() []string { return []string{a.Binary, "machine", "start", a.Machine} }
func (a Autostart) stopArgs() []string  { return []string{a.Binary, "machine", "stop", a.Machine} }

func (a Autostart) validate(goos string) error {
	if err := machine.ValidateName(a.Machine); err != nil {
		return err
	}
	if a.Binary == "" {
		return errors.New("autostart: the skiff binary path is empty")
	}
	abs := strings.HasPrefix(a.Binary, "/")
	if goos == "windows" {
		abs = len(a.Binary) >= 3 && a.Binary[1] == ':' && (a.Binary[2] == '\\' || a.Binary[2] == '/') || strings.HasPrefix(a.Binary, `\\`)
	}
	if !abs {
		// A relative path would resolve against whatever directory the login hook runs in.
		return fmt.Errorf("autostart: the skiff binary path %q must be absolute", a.Binary)
	}
	return nil
}

// Files returns the files that make the machine start at login on goos.
func (a Autostart) Files(goos string) ([]GeneratedFile, error) {
	if err := a.validate(goos); err != nil {
		return nil, err
	}
	switch goos {
	case "linux":
		return []GeneratedFile{{Path: ".config/systemd/user/" + a.unitName(), Mode: 0o644, Content: []byte(a.systemdUnit())}}, nil
	case "darwin":
		return []GeneratedFile{{Path: "Library/LaunchAgents/" + a.launchdLabel() + ".plist", Mode: 0o644, Content: []byte(a.launchdPlist())}}, nil
	case "windows":
		return []GeneratedFile{{Path: "skiff-machine-" + a.Machine + ".xml", Mode: 0o644, Content: a.taskXML()}}, nil
	}
	return nil, fmt.Errorf("%w (%s)", ErrAutostartUnsupported, goos)
}

// autostartDriver installs and removes the login hook on one platform.
type autostartDriver interface {
	enable(ctx context.Context, a Autostart, o AutostartOptions) error
	disable(ctx context.Context, a Autostart, o AutostartOptions) error
	enabled(ctx context.Context, a Autostart, o AutostartOptions) (bool, error)
}

// Enable installs the login hook for this platform. It is idempotent.
func (a Autostart) Enable(ctx context.Context, o AutostartOptions) error {
	d, goos := nativeAutostart()
	if d == nil {
		return ErrAutostartUnsupported
	}
	if err := a.validate(goos); err != nil {
		return err
	}
	if err := d.enable(ctx, a, o); err != nil {
		return fmt.Errorf("enable autostart of %s: %w", a.Machine, err)
	}
	return nil
}

// Disable removes the login hook. Removing one that is not there is not an error. It
// does not stop a running machine.
func (a Autostart) Disable(ctx context.Context, o AutostartOptions) error {
	d, _ := nativeAutostart()
	if d == nil {
		return ErrAutostartUnsupported
	}
	if err := machine.ValidateName(a.Machine); err != nil {
		return err
	}
	if err := d.disable(ctx, a, o); err != nil {
		return fmt.Errorf("disable autostart of %s: %w", a.Machine, err)
	}
	return nil
}

// Enabled reports whether the login hook is installed.
func (a Autostart) Enabled(ctx context.Context, o AutostartOptions) (bool, error) {
	d, _ := nativeAutostart()
	if d == nil {
		return false, ErrAutostartUnsupported
	}
	return d.enabled(ctx, a, o)
}

func (o AutostartOptions) homeDir() (string, error) {
	if o.HomeDir != "" {
		return o.HomeDir, nil
	}
	h, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find home directory: %w", err)
	}
	return h, nil
}

// writeGenerated writes a generated file atomically with its mode, creating parents.
func writeGenerated(path string, f GeneratedFile) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := atomicfile.Write(path, f.Content, f.Mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
