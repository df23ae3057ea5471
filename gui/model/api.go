// Package model is the tray and dashboard's UI-free layer: it watches the machines'
// host agents and the selected machine's engine, keeps a snapshot the widgets render,
// and carries out the user's actions. Everything it talks to sits behind small
// interfaces so tests drive it with fakes.
package model

import (
	"context"

	"github.com/skiff-dev/skiff/forward"
	"github.com/skiff-dev/skiff/gui/engine"
	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/machine/agentapi"
)

// Agent is the part of a host agent's control API the tray uses (agentapi.Client).
type Agent interface {
	State(ctx context.Context) (*agentapi.State, error)
	Stop(ctx context.Context, r agentapi.StopRequest) (*agentapi.StopResult, error)
	Events(ctx context.Context, fn func(agentapi.Event) error) error
	Control(ctx context.Context, r forward.ControlRequest) (*forward.ControlResponse, error)
}

// Engine is the part of the Docker Engine API the dashboard uses (engine.Client).
type Engine interface {
	Version(ctx context.Context) (engine.Version, error)
	Containers(ctx context.Context) ([]engine.Container, error)
	Images(ctx context.Context) ([]engine.Image, error)
	Do(ctx context.Context, id string, a engine.Action) error
	RemoveImage(ctx context.Context, id string) error
	Events(ctx context.Context, fn func(engine.Event)) error
	Logs(ctx context.Context, id string, tail int, fn func(engine.LogLine)) error
}

// Source finds machines and hands out clients for them (HomeSource reads a Skiff home).
type Source interface {
	List(ctx context.Context) ([]string, error)
	Spec(name string) (*machine.Spec, error)
	Status(ctx context.Context, name string) machine.Status
	Agent(name string) Agent
	Engine(name string) Engine
	EngineSocket(name string) string
	LogPath(name string) string
}

// Starter starts a machine (machine.Manager, or a fake in tests).
type Starter interface {
	Start(ctx context.Context, name string) error
}

// Stopper is a Starter that also stops machines through the lifecycle, which undoes what
// the start did on the host (docker's current context); without it, the tray asks the
// machine's agent.
type Stopper interface {
	Stop(ctx context.Context, name string, req agentapi.StopRequest) error
}
