package hostenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/skiff-dev/skiff/installer/internal/probe"
	"github.com/skiff-dev/skiff/machine/atomicfile"
)

// The docker CLI's built-in context: DOCKER_HOST, else the OS's well-known endpoint.
const DefaultContext = "default"

// CurrentContext is the context the docker CLI uses when given none: DOCKER_CONTEXT,
// else config.json's currentContext, else "default".
func CurrentContext() (string, error) {
	if v := os.Getenv("DOCKER_CONTEXT"); v != "" {
		return v, nil
	}
	cfg, err := readDockerConfig()
	if err != nil {
		return "", err
	}
	var cur string
	if raw, ok := cfg["currentContext"]; ok {
		if err := json.Unmarshal(raw, &cur); err != nil {
			return "", fmt.Errorf("docker config: currentContext: %w", err)
		}
	}
	if cur == "" {
		return DefaultContext, nil
	}
	return cur, nil
}

// UseContext makes name the docker CLI's current context, as `docker context use` does,
// keeping every other setting of config.json as it is.
func UseContext(name string) error {
	cfg, err := readDockerConfig()
	if err != nil {
		return err
	}
	if name == DefaultContext {
		delete(cfg, "currentContext")
	} else {
		b, _ := json.Marshal(name)
		cfg["currentContext"] = b
	}
	b, err := json.MarshalIndent(cfg, "", "\t")
	if err != nil {
		return err
	}
	dir, err := dockerConfigDir()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("docker config: %w", err)
	}
	// config.json may hold registry credentials: it stays the user's alone.
	return atomicfile.Write(filepath.Join(dir, "config.json"), b, 0o600)
}

// readDockerConfig is config.json as raw fields, so that rewriting it loses nothing the
// CLI (or a credential helper) put there. A missing file is an empty config.
func readDockerConfig() (map[string]json.RawMessage, error) {
	dir, err := dockerConfigDir()
	if err != nil {
		return nil, err
	}
	cfg := map[string]json.RawMessage{}
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(strings.TrimSpace(string(b))) == 0) {
		return cfg, nil
	}
	if err != nil {
		return nil, fmt.Errorf("docker config: %w", err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("docker config %s is not valid JSON, so Skiff leaves it alone: %w", filepath.Join(dir, "config.json"), err)
	}
	return cfg, nil
}

// contextExists says whether the docker CLI has a context called name.
func contextExists(name string) bool {
	if name == DefaultContext {
		return true
	}
	dir, err := contextDir(name)
	if err != nil {
		return false
	}
	_, err = os.Stat(filepath.Join(dir, "meta.json"))
	return err == nil
}

// contextHost is the docker endpoint of a context Skiff can read, "" if none.
func contextHost(name string) string {
	dir, err := contextDir(name)
	if err != nil {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return ""
	}
	var meta struct {
		Endpoints map[string]struct{ Host string }
	}
	if json.Unmarshal(b, &meta) != nil {
		return ""
	}
	return meta.Endpoints["docker"].Host
}

// SwitchOptions say when a machine's context may become the current one.
type SwitchOptions struct {
	// Machine is the machine whose context (ContextName) is made current.
	Machine string
	// Asked: the user asked for the switch (--switch-context or the machine's setting),
	// so a context they chose is replaced too.
	Asked bool
	// Record is the file where Skiff keeps which context it replaced, so that stop and rm
	// can put it back.
	Record string
	// Answers says whether a docker endpoint ("unix://...", "npipe://...") has a live
	// engine behind it; nil asks it for real.
	Answers func(ctx context.Context, host string) bool
}

// SwitchResult says what SwitchContext did, for a one-line message.
type SwitchResult struct {
	// Switched: the machine's context is now current; Previous was current before.
	Switched bool
	Previous string
	// Kept: the current context was left alone; Why says why, with what to run instead.
	Kept bool
	Why  string
}

// switchRecord is what Skiff replaced when it last switched the current context.
type switchRecord struct {
	SwitchedTo string `json:"switchedTo"`
	Previous   string `json:"previous"`
}

// SwitchContext makes the machine's docker context current when nothing would be lost:
// the current context is "default" and no engine answers at its endpoint, or it is a
// context Skiff switched to whose engine is gone, or the user asked. A context the user
// chose and a working native engine are never silently replaced.
func SwitchContext(ctx context.Context, o SwitchOptions) (SwitchResult, error) {
	want := ContextName(o.Machine)
	answers := o.Answers
	if answers == nil {
		answers = hostAnswers
	}
	for _, v := range []string{"DOCKER_HOST", "DOCKER_CONTEXT"} {
		if val := os.Getenv(v); val != "" && !o.Asked {
			return SwitchResult{Kept: true, Why: fmt.Sprintf("%s=%s is set here and wins over docker's current context; unset it or use docker --context %s", v, val, want)}, nil
		}
	}
	cur, err := CurrentContext()
	if err != nil {
		return SwitchResult{}, err
	}
	if cur == want {
		return SwitchResult{}, nil
	}
	rec := readSwitchRecord(o.Record)
	ours := rec != nil && rec.SwitchedTo == cur
	if !o.Asked {
		switch {
		case cur == DefaultContext:
			if h := DefaultHost(); answers(ctx, h) {
				return SwitchResult{Kept: true, Why: fmt.Sprintf("docker's current context is %q, and an engine answers at %s; use docker --context %s, or start with --switch-context", cur, h, want)}, nil
			}
		case ours:
			if h := contextHost(cur); h != "" && answers(ctx, h) {
				return SwitchResult{Kept: true, Why: fmt.Sprintf("docker's current context is %q, a running Skiff machine; use docker --context %s, or start with --switch-context", cur, want)}, nil
			}
		default:
			return SwitchResult{Kept: true, Why: fmt.Sprintf("docker's current context is %q, which you chose; use docker --context %s, or start with --switch-context", cur, want)}, nil
		}
	}
	prev := cur
	if ours {
		prev = rec.Previous // what the user had before Skiff's first switch
	}
	// The record is written first: a crash between the two leaves a record of a switch
	// that did not happen, which restore ignores, never a switch nobody can undo.
	if err := writeSwitchRecord(o.Record, switchRecord{SwitchedTo: want, Previous: prev}); err != nil {
		return SwitchResult{}, err
	}
	if err := UseContext(want); err != nil {
		return SwitchResult{}, err
	}
	return SwitchResult{Switched: true, Previous: cur}, nil
}

// RestoreContext puts back the context that was current before Skiff switched to the
// machine's, if Skiff did and nobody has switched since. It returns the context made
// current, or "" when it left things alone.
func RestoreContext(machine, record string) (string, error) {
	rec := readSwitchRecord(record)
	if rec == nil || rec.SwitchedTo != ContextName(machine) {
		return "", nil
	}
	cur, err := CurrentContext()
	if err != nil {
		return "", err
	}
	os.Remove(record)
	if cur != rec.SwitchedTo || os.Getenv("DOCKER_CONTEXT") != "" {
		return "", nil // the user moved on: their choice stands
	}
	prev := rec.Previous
	if !contextExists(prev) {
		prev = DefaultContext
	}
	return prev, UseContext(prev)
}

func readSwitchRecord(p string) *switchRecord {
	if p == "" {
		return nil
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	var r switchRecord
	if json.Unmarshal(b, &r) != nil || r.SwitchedTo == "" {
		return nil
	}
	return &r
}

func writeSwitchRecord(p string, r switchRecord) error {
	if p == "" {
		return errors.New("no file to record the docker context switch in")
	}
	b, _ := json.Marshal(r)
	return atomicfile.Write(p, b, 0o600)
}

// DefaultHost is the endpoint of docker's "default" context without DOCKER_HOST: the
// OS's well-known socket or pipe.
func DefaultHost() string {
	if runtime.GOOS == "windows" {
		return EngineHost(DockerEnginePipe)
	}
	return EngineHost(DockerSocketPath)
}

// hostAnswers says whether an engine is behind a docker endpoint. One Skiff cannot ask
// (tcp, ssh) counts as answering: it is somebody's engine, not to be replaced.
func hostAnswers(ctx context.Context, host string) bool {
	switch {
	case strings.HasPrefix(host, "unix://"):
		return probe.PingUnix(ctx, strings.TrimPrefix(host, "unix://")) == nil
	case strings.HasPrefix(host, "npipe://"):
		on, err := pipeExists(strings.ReplaceAll(strings.TrimPrefix(host, "npipe://"), "/", `\`))
		return on || err != nil && runtime.GOOS == "windows"
	}
	return true
}
