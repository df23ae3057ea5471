package hostenv

import (
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

// RemoveContext deletes the machine's docker context, if any.
func RemoveContext(machine string) error {
	dir, err := contextDir(ContextName(machine))
	if err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

// Shell is a shell dialect for `skiff machine env`.
type Shell string

const (
	ShellPOSIX      Shell = "bash"
	ShellFish       Shell = "fish"
	ShellPowerShell Shell = "powershell"
	ShellCmd        Shell = "cmd"
)

// EnvLines prints how to point DOCKER_HOST at a machine in the given shell.
func EnvLines(shell Shell, endpoint string) (string, error) {
	host := EngineHost(endpoint)
	switch shell {
	case ShellPOSIX, "zsh", "sh":
		return fmt.Sprintf("export DOCKER_HOST=%q\n", host), nil
	case ShellFish:
		return fmt.Sprintf("set -gx DOCKER_HOST %q;\n", host), nil
	case ShellPowerShell, "pwsh":
		return fmt.Sprintf("$Env:DOCKER_HOST = \"%s\"\n", host), nil
	case ShellCmd:
		return fmt.Sprintf("SET DOCKER_HOST=%s\n", host), nil
	}
	return "", fmt.Errorf("unknown shell %q: use bash, zsh, fish, powershell or cmd", shell)
}
