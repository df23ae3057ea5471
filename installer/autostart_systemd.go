package installer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// systemdUnit is a user unit that starts the machine when the user's manager starts
// (first login, or boot with lingering) and stops it when the manager stops (last logout).
func (a Autostart) systemdUnit() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[Unit]\nDescription=Skiff machine %s\nDocumentation=https://github.com/skiff-dev/skiff\n\n", a.Machine)
	b.WriteString("[Service]\n")
	// oneshot + RemainAfterExit: `machine start` returns once the engine answers, and the
	// host agent it spawned stays in this unit's cgroup, so stopping the unit runs
	// ExecStop (a graceful VM shutdown) before any leftover process is killed.
	b.WriteString("Type=oneshot\nRemainAfterExit=yes\n")
	if a.Home != "" {
		fmt.Fprintf(&b, "Environment=%s\n", systemdQuote("SKIFF_HOME="+a.Home))
	}
	fmt.Fprintf(&b, "ExecStart=%s\n", systemdCommand(a.startArgs()))
	fmt.Fprintf(&b, "ExecStop=%s\n", systemdCommand(a.stopArgs()))
	// A first boot under TCG can take minutes; shutdown is bounded by the agent itself.
	b.WriteString("TimeoutStartSec=10min\nTimeoutStopSec=3min\n\n")
	b.WriteString("[Install]\nWantedBy=default.target\n")
	return b.String()
}

func systemdCommand(args []string) string {
	q := make([]string, len(args))
	for i, s := range args {
		q[i] = systemdQuote(s)
	}
	return strings.Join(q, " ")
}

// systemdQuote quotes one word for a unit file: % and $ would otherwise be expanded as
// specifiers and variables, and whitespace would split the word.
func systemdQuote(s string) string {
	s = strings.ReplaceAll(s, "%", "%%")
	s = strings.ReplaceAll(s, "$", "$$")
	if s != "" && !strings.ContainsAny(s, " \t\"'\\;") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}

// systemdDriver enables the unit with the user's systemd manager.
type systemdDriver struct{}

func (systemdDriver) unitPath(a Autostart, o AutostartOptions) (string, error) {
	cfg := o.ConfigDir
	if cfg == "" {
		cfg = os.Getenv("XDG_CONFIG_HOME")
	}
	if cfg == "" {
		h, err := o.homeDir()
		if err != nil {
			return "", err
		}
		cfg = filepath.Join(h, ".config")
	}
	return filepath.Join(cfg, "systemd", "user", a.unitName()), nil
}

func (d systemdDriver) enable(ctx context.Context, a Autostart, o AutostartOptions) error {
	files, err := a.Files("linux")
	if err != nil {
		return err
	}
	path, err := d.unitPath(a, o)
	if err != nil {
		return err
	}
	if err := writeGenerated(path, files[0]); err != nil {
		return err
	}
	r := runnerOr(o.Runner)
	if _, err := r.Run(ctx, "systemctl", "--user", "daemon-reload"); err != nil {
		return fmt.Errorf("%w (is a systemd user manager running for this user? `loginctl enable-linger` starts one at boot)", err)
	}
	if _, err := r.Run(ctx, "systemctl", "--user", "enable", a.unitName()); err != nil {
		return err
	}
	return nil
}

func (d systemdDriver) disable(ctx context.Context, a Autostart, o AutostartOptions) error {
	path, err := d.unitPath(a, o)
	if err != nil {
		return err
	}
	if !fileExists(path) {
		return nil
	}
	r := runnerOr(o.Runner)
	// Disable before removing the file: systemctl needs the [Install] section to know
	// which .wants links to delete. The running machine is left alone.
	if _, err := r.Run(ctx, "systemctl", "--user", "disable", a.unitName()); err != nil {
		return err
	}
	if err := removeIfExists(path); err != nil {
		return err
	}
	_, err = r.Run(ctx, "systemctl", "--user", "daemon-reload")
	return err
}

func (d systemdDriver) enabled(_ context.Context, a Autostart, o AutostartOptions) (bool, error) {
	path, err := d.unitPath(a, o)
	if err != nil {
		return false, err
	}
	return fileExists(filepath.Join(filepath.Dir(path), "default.target.wants", a.unitName())), nil
}
