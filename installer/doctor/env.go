package doctor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/skiff-dev/skiff/installer/internal/probe"
	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/machine/agentapi"
)

// DefaultEnv is the real host, for the machines under home.
func DefaultEnv(home machine.Home) Env {
	tmpRun := filepath.Join(os.TempDir(), fmt.Sprintf("skiff-%d", os.Getuid()))
	env := Env{
		GOOS:          runtime.GOOS,
		GOARCH:        runtime.GOARCH,
		Getenv:        os.Getenv,
		LookPath:      exec.LookPath,
		Lstat:         os.Lstat,
		Readlink:      os.Readlink,
		ReadFile:      os.ReadFile,
		Ping:          probe.PingUnix,
		Dial:          probe.DialUnix,
		FreeBytes:     freeBytes,
		DockerContext: dockerContext,
		Machines:      func() ([]Machine, error) { return MachinesIn(home) },
		AgentState: func(ctx context.Context, control string) (*agentapi.State, error) {
			return agentapi.NewClient(control).State(ctx)
		},
		IsOurs: func(p string) bool {
			p = filepath.Clean(p)
			for _, root := range []string{home.Root, tmpRun} {
				if p == root || strings.HasPrefix(p, filepath.Clean(root)+string(filepath.Separator)) {
					return true
				}
			}
			return false
		},
		DataDir: home.Root,
	}
	platformEnv(&env, home)
	return env
}

// dockerContext reads the docker CLI's current context from its config files, as the
// CLI does, so doctor works without a docker binary.
func dockerContext() (string, string, error) {
	dir := os.Getenv("DOCKER_CONFIG")
	if dir == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return "", "", err
		}
		dir = filepath.Join(h, ".docker")
	}
	name := os.Getenv("DOCKER_CONTEXT")
	if name == "" {
		b, err := os.ReadFile(filepath.Join(dir, "config.json"))
		if errors.Is(err, fs.ErrNotExist) {
			return "", "", nil
		}
		if err != nil {
			return "", "", err
		}
		var cfg struct {
			CurrentContext string `json:"currentContext"`
		}
		if err := json.Unmarshal(b, &cfg); err != nil {
			return "", "", fmt.Errorf("%s is not valid JSON: %w", filepath.Join(dir, "config.json"), err)
		}
		name = cfg.CurrentContext
	}
	if name == "" || name == "default" {
		return name, "", nil
	}
	sum := sha256.Sum256([]byte(name))
	metaPath := filepath.Join(dir, "contexts", "meta", hex.EncodeToString(sum[:]), "meta.json")
	b, err := os.ReadFile(metaPath)
	if errors.Is(err, fs.ErrNotExist) {
		return name, "", fmt.Errorf("current docker context %q does not exist (no %s)", name, metaPath)
	}
	if err != nil {
		return name, "", err
	}
	var meta struct {
		Endpoints map[string]struct {
			Host string `json:"Host"`
		} `json:"Endpoints"`
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		return name, "", fmt.Errorf("docker context %q: %w", name, err)
	}
	return name, meta.Endpoints["docker"].Host, nil
}
