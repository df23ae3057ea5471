// Package winexec is how the Windows backends drive the OS: wsl.exe, PowerShell and the
// registry, each behind a small interface so that tests on Linux replay them against
// fakes that check the exact commands and feed back real failure output.
package winexec

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"unicode/utf16"

	"github.com/skiff-dev/skiff/vmm"
)

// Runner runs a command to completion.
type Runner interface {
	Run(ctx context.Context, name string, args ...string) (stdout, stderr []byte, err error)
}

// Spawner starts a long-running command (the WSL distro's init) whose life is the VM's.
type Spawner interface {
	Spawn(ctx context.Context, o SpawnOptions) (Process, error)
}

// SpawnOptions describe a long-running command.
type SpawnOptions struct {
	Name   string
	Args   []string
	Output io.Writer // stdout and stderr, e.g. the machine's serial log
}

// Process is a started command; vmm.WatchProcess waits for it.
type Process = vmm.Process

// Registry is the part of the Windows registry the backends touch. Paths are full, like
// HKLM\SOFTWARE\Microsoft\...
type Registry interface {
	// SubKeys lists the names of a key's subkeys; a missing key has none.
	SubKeys(path string) ([]string, error)
	// KeyExists reports whether the key exists.
	KeyExists(path string) (bool, error)
	// SetString creates the key if needed and sets a string value.
	SetString(path, name, value string) error
}

// ErrAccessDenied is wrapped by Registry implementations when Windows refuses a write
// because the process is not elevated.
var ErrAccessDenied = errors.New("access is denied")

// Exec runs real processes.
type Exec struct{}

// Run implements Runner.
func (Exec) Run(ctx context.Context, name string, args ...string) ([]byte, []byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	hideWindow(cmd)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.Bytes(), stderr.Bytes(), err
}

// Spawn implements Spawner. The process is not tied to ctx: it must outlive the call
// that started it.
func (Exec) Spawn(ctx context.Context, o SpawnOptions) (Process, error) {
	cmd := exec.Command(o.Name, o.Args...)
	hideWindow(cmd)
	cmd.Stdout, cmd.Stderr = o.Output, o.Output
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return vmm.CmdProcess(cmd), nil
}

// IsNotFound reports whether err means the program itself does not exist.
func IsNotFound(err error) bool {
	return errors.Is(err, exec.ErrNotFound)
}

// Text turns tool output into a string: wsl.exe writes UTF-16LE (with or without a BOM),
// PowerShell and most tools UTF-8 or ASCII. Trailing whitespace and NULs go.
func Text(b []byte) string {
	if isUTF16LE(b) {
		b = bytes.TrimPrefix(b, []byte{0xff, 0xfe})
		if len(b)%2 == 1 {
			b = b[:len(b)-1]
		}
		u := make([]uint16, len(b)/2)
		for i := range u {
			u[i] = binary.LittleEndian.Uint16(b[2*i:])
		}
		b = []byte(string(utf16.Decode(u)))
	}
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	s := strings.ReplaceAll(string(b), "\r\n", "\n")
	return strings.TrimRight(s, " \t\r\n\x00")
}

// isUTF16LE guesses UTF-16LE from a BOM or from NUL high bytes, which ASCII-range text in
// UTF-16LE always has and UTF-8 never does.
func isUTF16LE(b []byte) bool {
	if len(b) >= 2 && b[0] == 0xff && b[1] == 0xfe {
		return true
	}
	if len(b) < 2 {
		return false
	}
	zeros, pairs := 0, 0
	for i := 1; i < len(b); i += 2 {
		pairs++
		if b[i] == 0 && b[i-1] != 0 {
			zeros++
		}
	}
	return zeros*2 > pairs
}

// Output is a command's failure text for error messages and classification.
func Output(stdout, stderr []byte) string {
	o, e := Text(stdout), Text(stderr)
	switch {
	case o == "":
		return e
	case e == "":
		return o
	}
	return o + "\n" + e
}

// PSQuote quotes s as a PowerShell single-quoted string, where only ' needs escaping.
func PSQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// PowerShellArgs is the command line for one script: no profile (user profiles print and
// slow down), no prompts, errors terminate, and UTF-8 output.
func PowerShellArgs(script string) []string {
	return []string{"-NoLogo", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-Command",
		"$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue'; " +
			"[Console]::OutputEncoding = [Text.Encoding]::UTF8; " + script}
}

// PowerShell runs script and returns its output as text.
func PowerShell(ctx context.Context, r Runner, script string) (string, error) {
	stdout, stderr, err := r.Run(ctx, "powershell.exe", PowerShellArgs(script)...)
	if err != nil {
		if IsNotFound(err) {
			return "", fmt.Errorf("powershell.exe not found: %w", err)
		}
		return Output(stdout, stderr), &ToolError{Tool: "powershell.exe", Output: Output(stdout, stderr), Err: err}
	}
	return Text(stdout), nil
}

// ToolError is a command that ran and failed; Output is what it said.
type ToolError struct {
	Tool   string
	Output string
	Err    error
}

func (e *ToolError) Error() string {
	if e.Output == "" {
		return fmt.Sprintf("%s: %v", e.Tool, e.Err)
	}
	return fmt.Sprintf("%s: %v: %s", e.Tool, e.Err, e.Output)
}

func (e *ToolError) Unwrap() error { return e.Err }
