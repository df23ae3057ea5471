package hostenv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/skiff-dev/skiff/machine/atomicfile"
)

// ContextName is the docker context of a machine: "skiff" for the default machine,
// "skiff-NAME" for the others.
func ContextName(machine string) string {
	if machine == "default" {
		return "skiff"
	}
	return "skiff-" + machine
}

func dockerConfigDir() (string, error) {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return d, nil
	}
	h, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(h, ".docker"), nil
}

// contextDir is where the docker CLI keeps a context's metadata: named by the sha256 of
// the context name, as the CLI itself does, so no docker binary is needed to write it.
func contextDir(name string) (string, error) {
	cfg, err := dockerConfigDir()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(name))
	return filepath.Join(cfg, "contexts", "meta", hex.EncodeToString(sum[:])), nil
}

// EngineHost is the DOCKER_HOST value of an engine endpoint.
func EngineHost(endpoint string) string {
	if strings.HasPrefix(endpoint, `\\.\pipe\`) {
		// npipe:////./pipe/NAME: what the docker CLI and its Go client parse as a pipe.
		return "npipe://" + strings.ReplaceAll(endpoint, `\`, "/")
	}
	return "unix://" + filepath.ToSlash(endpoint)
}

// CreateContext writes (or updates) the docker context for a machine.
func CreateContext(machine, endpoint string) error {
	name := ContextName(machine)
	dir, err := contextDir(name)
	if err != nil {
		return err
	}
	meta := map[string]any{
		"Name":      name,
		"Metadata":  map[string]string{"Description": "Skiff machine " + machine},
		"Endpoints": map[string]any{"docker": map[string]any{"Host": EngineHost(endpoint), "SkipTLSVerify": false}},
	}
	b, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("docker context: %w", err)
	}
	// Atomic: a docker CLI reading the context as it is written never sees half of it.
	return atomicfile.Write(filepath.Join(dir, "meta.json"), b, 0o644)
}

// DockerContext keeps the docker CLI's context of every machine: Podman serves
// Docker's API too, so podman machines get one as well.
type DockerContext struct{}

func (DockerContext) Kind() string { return "docker context" }

func (DockerContext) Add(_ context.Context, t Target) error {
	return CreateContext(t.Machine, t.Endpoint)
}

func (DockerContext) Remove(_ context.Context, machine string) error { return RemoveContext(machine) }

func (DockerContext) Env(t Target) []EnvVar {
	return []EnvVar{{"DOCKER_HOST", EngineHost(t.Endpoint)}}
}

// RemoveContext deletes the machine's docker context, if any.
func RemoveContext(machine string) error {
	dir, err := contextDir(ContextName(machine))
	if err != nil {
		return err
	}
	return os.RemoveAll(dir)
}
