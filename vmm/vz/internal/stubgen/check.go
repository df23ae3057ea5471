package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ModuleSource returns the module cache directory holding the version of mod that the
// module in dir requires.
func ModuleSource(ctx context.Context, dir, mod string) (string, error) {
	ver, err := goCmd(ctx, dir, nil, "list", "-m", "-f", "{{.Version}}", mod)
	if err != nil {
		return "", fmt.Errorf("find the required version of %s: %w", mod, err)
	}
	out, err := goCmd(ctx, dir, nil, "mod", "download", "-json", mod+"@"+strings.TrimSpace(string(ver)))
	if err != nil {
		return "", fmt.Errorf("download %s: %w", mod, err)
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil {
		return "", fmt.Errorf("go mod download output: %w", err)
	}
	if info.Dir == "" {
		return "", fmt.Errorf("download %s: %s", mod, info.Error)
	}
	return info.Dir, nil
}

// CheckOptions says what Check type-checks.
type CheckOptions struct {
	ModuleDir string   // the module to vet; its go.mod and go.sum are copied, never edited
	Packages  []string // package patterns; default ./...
	Arches    []string // darwin architectures; default arm64 and amd64
}

// Check generates the vz stub and runs go vet on the module for darwin against it. The
// real go.mod stays untouched: a copy carries the replace and is passed with -modfile.
// The returned output holds the vet diagnostics.
func Check(ctx context.Context, o CheckOptions) ([]byte, error) {
	if len(o.Packages) == 0 {
		o.Packages = []string{"./..."}
	}
	if len(o.Arches) == 0 {
		o.Arches = stubArches
	}
	modDir, err := filepath.Abs(o.ModuleDir)
	if err != nil {
		return nil, err
	}
	src, err := ModuleSource(ctx, modDir, Module)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "vzstub")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	stub := filepath.Join(tmp, "vz")
	if err := Generate(src, stub, Module); err != nil {
		return nil, fmt.Errorf("generate stub: %w", err)
	}
	modfile := filepath.Join(tmp, "go.mod")
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(modDir, f))
		if err != nil && !(f == "go.sum" && errors.Is(err, os.ErrNotExist)) {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(tmp, f), b, 0o644); err != nil {
			return nil, err
		}
	}
	if _, err := goCmd(ctx, modDir, nil, "mod", "edit", "-replace="+Module+"="+stub, modfile); err != nil {
		return nil, err
	}
	var all bytes.Buffer
	var failed []string
	for _, arch := range o.Arches {
		env := []string{"GOOS=darwin", "GOARCH=" + arch, "CGO_ENABLED=1", "GOFLAGS=-mod=mod"}
		args := append([]string{"vet", "-modfile=" + modfile}, o.Packages...)
		out, err := goCmd(ctx, modDir, env, args...)
		fmt.Fprintf(&all, "== darwin/%s: go vet %s\n", arch, strings.Join(o.Packages, " "))
		all.Write(out)
		if err != nil {
			failed = append(failed, "darwin/"+arch)
		}
	}
	if len(failed) > 0 {
		return all.Bytes(), fmt.Errorf("go vet against the vz stub failed for %s", strings.Join(failed, ", "))
	}
	return all.Bytes(), nil
}

// goCmd runs the go tool and returns stdout; on failure the error carries stderr too.
func goCmd(ctx context.Context, dir string, env []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if args[0] == "vet" {
			return append(stdout.Bytes(), stderr.Bytes()...), fmt.Errorf("go %s: %w", args[0], err)
		}
		return stdout.Bytes(), fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return append(stdout.Bytes(), stderr.Bytes()...), nil
}
