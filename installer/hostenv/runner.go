package hostenv

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// Runner runs OS tools (systemctl, launchctl, schtasks, sudo). Tests swap it for a fake
// that records the exact command lines.
type Runner interface {
	Run(ctx context.Context, name string, args ...string) (output []byte, err error)
}

// ExecRunner runs commands for real.
type ExecRunner struct{}

// Run implements Runner; the error carries the tool's output, which is where tools
// such as launchctl explain what went wrong.
func (ExecRunner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.Bytes(), nil
}

// RunnerOr is r, or the real runner when r is nil.
func RunnerOr(r Runner) Runner {
	if r == nil {
		return ExecRunner{}
	}
	return r
}
