package hostenv

import (
	"context"
	"errors"
	"fmt"
)

// Engines a machine may run; an empty one is Docker.
const (
	EngineDocker = "docker"
	EnginePodman = "podman"
)

// Target is a machine as its engine's clients see it.
type Target struct {
	Machine  string
	Endpoint string // the engine socket (a pipe name on Windows)
	Engine   string // EngineDocker or EnginePodman
}

// Client is one kind of engine client on the host that keeps named connections (the
// docker CLI's contexts, Podman's system connections). Each machine gets one per client
// that can speak its engine's API; another client is one more implementation.
type Client interface {
	// Kind names the client in messages ("docker context").
	Kind() string
	// Add writes (or updates) the machine's connection; a client that cannot speak
	// the machine's engine, or is not installed, does nothing.
	Add(ctx context.Context, t Target) error
	// Remove deletes the machine's connection, if any.
	Remove(ctx context.Context, machine string) error
	// Env is what `machine env` sets for the machine, if anything.
	Env(t Target) []EnvVar
}

// EnvVar is one variable of `machine env`.
type EnvVar struct{ Name, Value string }

// Clients are the clients Skiff keeps connections for, with the real OS tools.
func Clients() []Client {
	return []Client{DockerContext{}, &PodmanConnection{}}
}

// AddAll adds the machine to every client; one failing does not stop the others.
func AddAll(ctx context.Context, clients []Client, t Target) error {
	return forEach(clients, func(c Client) error { return c.Add(ctx, t) })
}

// RemoveAll removes the machine from every client, whatever its engine was.
func RemoveAll(ctx context.Context, clients []Client, machine string) error {
	return forEach(clients, func(c Client) error { return c.Remove(ctx, machine) })
}

// forEach calls fn for every client and joins the failures, each named by its client.
func forEach(clients []Client, fn func(Client) error) error {
	var errs []error
	for _, c := range clients {
		if err := fn(c); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.Kind(), err))
		}
	}
	return errors.Join(errs...)
}

// EnvFor is every client's variables for the machine, in client order.
func EnvFor(clients []Client, t Target) []EnvVar {
	var out []EnvVar
	for _, c := range clients {
		out = append(out, c.Env(t)...)
	}
	return out
}
