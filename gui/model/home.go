package model

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/skiff-dev/skiff/gui/engine"
	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/machine/agentapi"
)

// HomeSource is the real Source: the machines of one Skiff home.
type HomeSource struct{ Home machine.Home }

func (h HomeSource) List(ctx context.Context) ([]string, error) { return h.Home.List() }

func (h HomeSource) Spec(name string) (*machine.Spec, error) { return h.Home.Dir(name).Spec() }

func (h HomeSource) Status(ctx context.Context, name string) machine.Status {
	return h.Home.Dir(name).Status(ctx)
}

func (h HomeSource) Agent(name string) Agent {
	return agentapi.NewClient(h.Home.Dir(name).Sock(machine.SockControl))
}

func (h HomeSource) Engine(name string) Engine { return engine.New(h.EngineSocket(name)) }

func (h HomeSource) EngineSocket(name string) string {
	return h.Home.Dir(name).EngineEndpoint()
}

func (h HomeSource) LogPath(name string) string { return h.Home.Dir(name).File(machine.FileAgentLog) }

// CLIStarter starts machines with `skiff machine start NAME`.
type CLIStarter struct {
	Binary string   // path of the skiff CLI
	Env    []string // extra environment, e.g. SKIFF_HOME=...
}

// FindCLI looks for the skiff CLI next to the running binary, then on PATH.
func FindCLI() (string, error) {
	name := "skiff"
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("the skiff CLI is neither next to the tray nor on PATH: %w", err)
	}
	return p, nil
}

// Start runs the CLI and waits for it. The CLI outlives a cancelled ctx on purpose:
// quitting the tray must never abort a machine half-way through its start.
func (s CLIStarter) Start(ctx context.Context, name string) error {
	if s.Binary == "" {
		return errors.New("the skiff CLI was not found, so machines cannot be started from here")
	}
	cmd := exec.CommandContext(context.WithoutCancel(ctx), s.Binary, "machine", "start", name)
	cmd.Env = append(os.Environ(), s.Env...)
	detach(cmd)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("skiff machine start %s: %w: %s", name, err, lastLines(string(out), 6))
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
