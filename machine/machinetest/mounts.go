package machinetest

import (
	"os"
	"path/filepath"
	"strings"
)

// CheckBindMount proves that dir, a host folder inside one of the machine's shares, works
// as a `docker run -v` bind mount: the container reads a file the host wrote, the host
// reads one the container wrote, and a :ro bind refuses writes.
func (e *Env) CheckBindMount(name, dir string) {
	e.T.Helper()
	os.WriteFile(filepath.Join(dir, "from-host"), []byte("written on the host\n"), 0o644)
	out := e.MustDocker(name, "run", "--rm", "-v", dir+":/src", TestImage, "sh", "-c", "cat /src/from-host; echo written in the container > /src/from-container")
	if !strings.Contains(out, "written on the host") {
		e.T.Fatalf("the container did not read the host's file: %q", out)
	}
	got, err := os.ReadFile(filepath.Join(dir, "from-container"))
	if err != nil || strings.TrimSpace(string(got)) != "written in the container" {
		e.T.Fatalf("the host did not see the container's file: %q %v", got, err)
	}
	if out, err := e.DockerRun(name, "run", "--rm", "-v", dir+":/src:ro", TestImage, "sh", "-c", "echo x > /src/nope"); err == nil {
		e.T.Fatalf("a write to a :ro bind mount succeeded: %s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "nope")); err == nil {
		e.T.Fatal("a :ro bind mount let a file through")
	}
}
