package installer

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// launchdPATH is the PATH the agent runs with: launchd's default omits Homebrew, where
// qemu usually lives.
const launchdPATH = "/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"

// launchdPlist is a LaunchAgent that runs `machine start` once per GUI login.
func (a Autostart) launchdPlist() string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
`)
	key := func(k string) { fmt.Fprintf(&b, "\t<key>%s</key>\n", plistEscape(k)) }
	str := func(indent, s string) { fmt.Fprintf(&b, "%s<string>%s</string>\n", indent, plistEscape(s)) }
	key("Label")
	str("\t", a.launchdLabel())
	key("ProgramArguments")
	b.WriteString("\t<array>\n")
	for _, s := range a.startArgs() {
		str("\t\t", s)
	}
	b.WriteString("\t</array>\n")
	key("RunAtLoad")
	b.WriteString("\t<true/>\n")
	// start returns once the engine answers; relaunching it would be wrong.
	key("KeepAlive")
	b.WriteString("\t<false/>\n")
	// The host agent outlives `machine start`; without this launchd kills it with the
	// job's process group.
	key("AbandonProcessGroup")
	b.WriteString("\t<true/>\n")
	// Only GUI logins, not ssh sessions.
	key("LimitLoadToSessionType")
	str("\t", "Aqua")
	key("EnvironmentVariables")
	b.WriteString("\t<dict>\n")
	fmt.Fprintf(&b, "\t\t<key>PATH</key>\n")
	str("\t\t", launchdPATH)
	if a.Home != "" {
		fmt.Fprintf(&b, "\t\t<key>SKIFF_HOME</key>\n")
		str("\t\t", a.Home)
	}
	b.WriteString("\t</dict>\n")
	b.WriteString("</dict>\n</plist>\n")
	return b.String()
}

func plistEscape(s string) string {
	var buf bytes.Buffer
	_ = xml.EscapeText(&buf, []byte(s))
	return buf.String()
}

// launchdDriver loads the agent into the user's GUI domain.
type launchdDriver struct{}

func (launchdDriver) plistPath(a Autostart, o AutostartOptions) (string, error) {
	h, err := o.homeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(h, "Library", "LaunchAgents", a.launchdLabel()+".plist"), nil
}

func (launchdDriver) domain(o AutostartOptions) string {
	uid := o.UID
	if uid <= 0 {
		uid = os.Getuid()
	}
	return "gui/" + strconv.Itoa(uid)
}

func (d launchdDriver) enable(ctx context.Context, a Autostart, o AutostartOptions) error {
	files, err := a.Files("darwin")
	if err != nil {
		return err
	}
	path, err := d.plistPath(a, o)
	if err != nil {
		return err
	}
	if err := writeGenerated(path, files[0]); err != nil {
		return err
	}
	r := runnerOr(o.Runner)
	// bootstrap refuses a label that is already loaded, so unload any earlier version
	// first; failing to unload what was never loaded is expected.
	_, _ = r.Run(ctx, "launchctl", "bootout", d.domain(o)+"/"+a.launchdLabel())
	// Loading runs the job once now (RunAtLoad); `machine start` of a running machine is a no-op.
	if _, err := r.Run(ctx, "launchctl", "bootstrap", d.domain(o), path); err != nil {
		return err
	}
	return nil
}

func (d launchdDriver) disable(ctx context.Context, a Autostart, o AutostartOptions) error {
	path, err := d.plistPath(a, o)
	if err != nil {
		return err
	}
	if !fileExists(path) {
		return nil
	}
	// bootout of a job whose program has exited leaves the machine running, because
	// AbandonProcessGroup kept the agent out of the job.
	_, _ = runnerOr(o.Runner).Run(ctx, "launchctl", "bootout", d.domain(o)+"/"+a.launchdLabel())
	return removeIfExists(path)
}

func (d launchdDriver) enabled(_ context.Context, a Autostart, o AutostartOptions) (bool, error) {
	path, err := d.plistPath(a, o)
	if err != nil {
		return false, err
	}
	return fileExists(path), nil
}
