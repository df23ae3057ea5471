// Package layers holds the test that keeps Skiff's packages layered: each package may
// import only packages of its own layer or below, on every OS Skiff builds for. A new
// package must be placed in the table first.
package layers

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/skiff-dev/skiff/"

// layers lists Skiff's packages from the bottom up, by path prefix (the longest match
// wins). The reasons say what a layer is, so that a violation says what went wrong.
var layers = []struct {
	why      string
	prefixes []string
}{
	{"protocols and primitives: the wire formats, the authenticated transport, path rules", []string{
		"forward", "forward/transport", "forward/pathmap", "forward/winpipe", "images/seed", "installer/internal/probe",
		"machine/atomicfile"}},
	{"the data plane and the guest image", []string{
		"forward/usernet", "forward/guest", "forward/engineproxy", "forward/share9p", "forward/hostports", "forward/fsevents",
		"images", "images/guestinit"}},
	{"hypervisor backends", []string{"vmm"}},
	{"what the lifecycle and its clients share: failure classes, the control API, run-time host integration", []string{
		"machine/errdefs", "machine/agentapi", "installer/hostenv"}},
	{"the machine: spec, directory, status, lifecycle", []string{"machine"}},
	{"what runs a machine or fits Skiff into the host", []string{
		"machine/hostagent", "machine/backends", "installer"}},
	{"the tray", []string{"gui"}},
	{"commands, test support and end-to-end tests", []string{
		"cmd", "vmm/vmmtest", "vmm/winexec/winexectest", "installer/hostenv/hostenvtest", "machine/machinetest",
		"machine/e2e", "forward/e2e", "gui/e2e", "gui/fake"}},
}

// layerOf is the layer of a package path inside the module, or -1 when no prefix matches.
func layerOf(pkg string) int {
	best, bestLen := -1, -1
	for i, l := range layers {
		for _, p := range l.prefixes {
			if (pkg == p || strings.HasPrefix(pkg, p+"/")) && len(p) > bestLen {
				best, bestLen = i, len(p)
			}
		}
	}
	return best
}

func TestLayering(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	for _, goos := range []string{"linux", "darwin", "windows"} {
		t.Run(goos, func(t *testing.T) {
			cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Imports", module+"...")
			cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH=amd64", "GOFLAGS=-mod=mod")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("go list: %v\n%s", err, stderr.String())
			}
			dec := json.NewDecoder(bytes.NewReader(out))
			n := 0
			for {
				var p struct {
					ImportPath string
					Imports    []string
				}
				if err := dec.Decode(&p); err == io.EOF {
					break
				} else if err != nil {
					t.Fatal(err)
				}
				n++
				from := strings.TrimPrefix(p.ImportPath, module)
				lf := layerOf(from)
				if lf < 0 {
					t.Errorf("%s is in no layer: add it to the table in this test", from)
					continue
				}
				for _, imp := range p.Imports {
					to, ok := strings.CutPrefix(imp, module)
					if !ok {
						continue
					}
					if lt := layerOf(to); lt > lf {
						t.Errorf("%s imports %s, a layer above it (%q imports %q)", from, to, layers[lf].why, layers[lt].why)
					}
				}
			}
			if n < 30 {
				t.Fatalf("go list found only %d packages", n)
			}
		})
	}
}
