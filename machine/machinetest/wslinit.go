package machinetest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BuildWSLInit builds backend qemu-wsl's stand-in init (static) for this test and
// returns its path.
func BuildWSLInit(t testing.TB) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "skiff-wslinit")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./vmm/qemu/internal/wslinit/skiff-wslinit")
	cmd.Dir = RepoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the WSL stand-in's init: %v\n%s", err, b)
	}
	return out
}
