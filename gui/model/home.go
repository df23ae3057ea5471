package model

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

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

// FindCLI looks for the skiff CLI next to the running binary, then on PATH: its hidden
// `hostagent` command is what runs a machine the tray starts.
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

// ManagerStarter starts machines through the lifecycle, as `skiff machine start` does.
type ManagerStarter struct{ Manager *machine.Manager }

// Start starts the machine and waits for its engine. The start outlives a cancelled ctx
// on purpose: quitting the tray must never abort a machine half-way through its start.
func (s ManagerStarter) Start(ctx context.Context, name string) error {
	if len(s.Manager.Agent) == 0 {
		return errors.New("the skiff CLI was not found, so machines cannot be started from here")
	}
	_, err := s.Manager.Start(context.WithoutCancel(ctx), name, machine.StartOptions{})
	return err
}

// Stop stops the machine as `skiff machine stop` does, so that it also puts back docker's
// current context if the start switched it.
func (s ManagerStarter) Stop(ctx context.Context, name string, req agentapi.StopRequest) error {
	_, err := s.Manager.Stop(ctx, name, req)
	return err
}
