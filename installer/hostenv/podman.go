package hostenv

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
)

// PodmanConnection keeps a Podman system connection per podman machine, named as the
// docker context is. It goes through the podman CLI, which writes wherever its version
// keeps connections (containers.conf's [engine.service_destinations] up to 4.x,
// podman-connections.json from 5.0), and makes the first connection the default by
// itself, so an existing default stays.
type PodmanConnection struct {
	// Binary is the podman CLI; empty looks it up on PATH (none: nothing to do).
	Binary string
	Runner Runner
}

func (*PodmanConnection) Kind() string { return "podman connection" }

// podmanConn is one entry of `podman system connection list --format json`.
type podmanConn struct {
	Name    string
	URI     string
	Default bool
}

func (p *PodmanConnection) bin() (string, bool) {
	if p.Binary != "" {
		return p.Binary, true
	}
	b, err := exec.LookPath("podman")
	return b, err == nil
}

func (p *PodmanConnection) list(ctx context.Context, bin string) (map[string]podmanConn, error) {
	out, err := RunnerOr(p.Runner).Run(ctx, bin, "system", "connection", "list", "--format", "json")
	if err != nil {
		return nil, err
	}
	var conns []podmanConn
	if len(out) > 0 {
		if err := json.Unmarshal(out, &conns); err != nil {
			return nil, fmt.Errorf("read podman's connection list: %w", err)
		}
	}
	m := make(map[string]podmanConn, len(conns))
	for _, c := range conns {
		m[c.Name] = c
	}
	return m, nil
}

// Add registers a podman machine's socket; Docker's engine has no libpod API.
func (p *PodmanConnection) Add(ctx context.Context, t Target) error {
	bin, ok := p.bin()
	if t.Engine != EnginePodman || !ok {
		return nil
	}
	name, uri := ContextName(t.Machine), EngineHost(t.Endpoint)
	conns, err := p.list(ctx, bin)
	if err != nil {
		return err
	}
	args := []string{"system", "connection", "add"}
	if c, ok := conns[name]; ok {
		if c.URI == uri {
			return nil
		}
		// Podman 5 will not overwrite a connection: replace it, keeping its default.
		if _, err := RunnerOr(p.Runner).Run(ctx, bin, "system", "connection", "rm", name); err != nil {
			return err
		}
		if c.Default {
			args = append(args, "--default")
		}
	}
	_, err = RunnerOr(p.Runner).Run(ctx, bin, append(args, name, uri)...)
	return err
}

// Remove deletes the machine's connection if podman lists it.
func (p *PodmanConnection) Remove(ctx context.Context, machine string) error {
	bin, ok := p.bin()
	if !ok {
		return nil
	}
	name := ContextName(machine)
	conns, err := p.list(ctx, bin)
	if err != nil {
		return err
	}
	if _, ok := conns[name]; !ok {
		return nil
	}
	_, err = RunnerOr(p.Runner).Run(ctx, bin, "system", "connection", "rm", name)
	return err
}

// Env points Podman's clients at a podman machine.
func (*PodmanConnection) Env(t Target) []EnvVar {
	if t.Engine != EnginePodman {
		return nil
	}
	return []EnvVar{{"CONTAINER_HOST", EngineHost(t.Endpoint)}}
}
