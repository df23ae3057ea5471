package installer

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/skiff-dev/skiff/machine"
)

// StableExecutable is this executable's path as login hooks should run it: the PATH
// entry (say /opt/homebrew/bin/skiff) when it is the same file, because a package
// manager's versioned path (…/Cellar/skiff/0.1.0/bin/skiff) disappears on upgrade.
func StableExecutable() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the skiff executable: %w", err)
	}
	name := "skiff"
	if runtime.GOOS == "windows" {
		name = "skiff.exe"
	}
	if p, err := exec.LookPath(name); err == nil {
		if abs, err := filepath.Abs(p); err == nil && sameFile(abs, exe) {
			return abs, nil
		}
	}
	return exe, nil
}

func sameFile(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// MachineAutostart is the login hook for a machine of home run by binary. SKIFF_HOME is
// recorded only when the user set one; otherwise the default is resolved at login.
func MachineAutostart(home machine.Home, name, binary string) Autostart {
	a := Autostart{Binary: binary, Machine: name}
	if os.Getenv("SKIFF_HOME") != "" {
		a.Home = home.Root
	}
	return a
}

// AutostartRequest asks ApplyAutostart to turn a machine's login hook on or off.
type AutostartRequest struct {
	Home    machine.Home
	Machine string
	Enabled bool
	// Binary is the skiff executable the hook runs; empty means StableExecutable.
	Binary string
}

// ApplyAutostart makes the login hook match req. `skiff machine set --autostart` calls it
// after saving Spec.Autostart, so the spec and the host agree.
func ApplyAutostart(ctx context.Context, req AutostartRequest, o AutostartOptions) error {
	if req.Enabled && !req.Home.Dir(req.Machine).Exists() {
		return fmt.Errorf("autostart of %q: %w", req.Machine, machine.NotFound(req.Machine))
	}
	exe := req.Binary
	if exe == "" {
		var err error
		if exe, err = StableExecutable(); err != nil {
			return err
		}
	}
	a := MachineAutostart(req.Home, req.Machine, exe)
	if req.Enabled {
		return a.Enable(ctx, o)
	}
	return a.Disable(ctx, o)
}
