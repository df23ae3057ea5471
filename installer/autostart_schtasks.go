package installer

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"strings"
	"unicode/utf16"
)

// taskNS is the Task Scheduler schema namespace.
const taskNS = "http://schemas.microsoft.com/windows/2004/02/mit/task"

// taskXMLText is the scheduled task as text. It declares UTF-16 because schtasks
// /Create /XML expects the file in that encoding; taskXML encodes it accordingly.
func (a Autostart) taskXMLText() string {
	esc := func(s string) string {
		var b bytes.Buffer
		_ = xml.EscapeText(&b, []byte(s))
		return b.String()
	}
	user := ""
	if a.User != "" {
		user = "\n      <UserId>" + esc(a.User) + "</UserId>"
	}
	args := strings.Join(a.startArgs()[1:], " ")
	return `<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="` + taskNS + `">
  <RegistrationInfo>
    <Description>Start the Skiff machine ` + esc(a.Machine) + ` at logon</Description>
    <URI>` + esc(a.taskName()) + `</URI>
  </RegistrationInfo>
  <Triggers>
    <LogonTrigger>
      <Enabled>true</Enabled>` + user + `
    </LogonTrigger>
  </Triggers>
  <Principals>
    <Principal id="Author">` + user + `
      <LogonType>InteractiveToken</LogonType>
      <RunLevel>LeastPrivilege</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <AllowHardTerminate>true</AllowHardTerminate>
    <StartWhenAvailable>false</StartWhenAvailable>
    <RunOnlyIfNetworkAvailable>false</RunOnlyIfNetworkAvailable>
    <IdleSettings>
      <StopOnIdleEnd>false</StopOnIdleEnd>
      <RestartOnIdle>false</RestartOnIdle>
    </IdleSettings>
    <AllowStartOnDemand>true</AllowStartOnDemand>
    <Enabled>true</Enabled>
    <Hidden>false</Hidden>
    <RunOnlyIfIdle>false</RunOnlyIfIdle>
    <WakeToRun>false</WakeToRun>
    <ExecutionTimeLimit>PT30M</ExecutionTimeLimit>
    <Priority>7</Priority>
  </Settings>
  <Actions Context="Author">
    <Exec>
      <Command>` + esc(a.Binary) + `</Command>
      <Arguments>` + esc(args) + `</Arguments>
    </Exec>
  </Actions>
</Task>
`
}

// taskXML is taskXMLText as UTF-16LE with a byte order mark.
func (a Autostart) taskXML() []byte {
	text := strings.ReplaceAll(a.taskXMLText(), "\n", "\r\n")
	u := utf16.Encode([]rune(text))
	out := make([]byte, 2, 2+2*len(u))
	out[0], out[1] = 0xFF, 0xFE
	for _, c := range u {
		out = append(out, byte(c), byte(c>>8))
	}
	return out
}

// schtasksDriver registers the task with Task Scheduler. Task Scheduler has no logoff
// trigger, so stopping at logoff is left to the host agent ending with the session.
type schtasksDriver struct{}

func (schtasksDriver) user(a Autostart) Autostart {
	if a.User == "" {
		if u := os.Getenv("USERNAME"); u != "" {
			a.User = u
			if d := os.Getenv("USERDOMAIN"); d != "" {
				a.User = d + `\` + u
			}
		}
	}
	return a
}

func (d schtasksDriver) enable(ctx context.Context, a Autostart, o AutostartOptions) error {
	a = d.user(a)
	if a.User == "" {
		// Without a user the trigger fires for every logon and needs admin rights.
		return fmt.Errorf("cannot tell which Windows user to start the machine for (USERNAME is not set)")
	}
	files, err := a.Files("windows")
	if err != nil {
		return err
	}
	dir := o.TempDir
	if dir == "" {
		dir = os.TempDir()
	}
	tmp, err := os.CreateTemp(dir, "skiff-task-*.xml")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(files[0].Content); err != nil {
		tmp.Close()
		return fmt.Errorf("write task definition: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	_, err = runnerOr(o.Runner).Run(ctx, "schtasks", "/Create", "/TN", a.taskName(), "/XML", tmp.Name(), "/F")
	return err
}

func (d schtasksDriver) disable(ctx context.Context, a Autostart, o AutostartOptions) error {
	on, err := d.enabled(ctx, a, o)
	if err != nil || !on {
		return err
	}
	_, err = runnerOr(o.Runner).Run(ctx, "schtasks", "/Delete", "/TN", a.taskName(), "/F")
	return err
}

// enabled asks schtasks rather than matching its (localised) error text.
func (schtasksDriver) enabled(ctx context.Context, a Autostart, o AutostartOptions) (bool, error) {
	_, err := runnerOr(o.Runner).Run(ctx, "schtasks", "/Query", "/TN", a.taskName())
	return err == nil, nil
}
