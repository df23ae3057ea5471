//go:build linux

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/machine/machinetest"
)

// virtiofsShares are two host folders a machine shares over virtiofs, one read-write and
// one read-only. TestTwoMachines gives them to its first machine: one of their own would
// cost CI another boot.
type virtiofsShares struct{ rw, ro string }

func newVirtiofsShares(t *testing.T) virtiofsShares {
	return virtiofsShares{rw: t.TempDir(), ro: t.TempDir()}
}

func (v virtiofsShares) initArgs() []string {
	return []string{"--share-type", "virtiofs", "--mount", v.rw + ":/mnt/vrw", "--mount", v.ro + ":/mnt/vro:ro"}
}

// check drives the shares of a running machine with the docker CLI and ssh.
func (v virtiofsShares) check(t *testing.T, e *machinetest.Env, name string) {
	t.Helper()
	for _, dir := range []string{v.rw, v.ro} {
		if len(virtiofsds(dir)) == 0 {
			t.Fatalf("no virtiofsd serves %s", dir)
		}
	}
	// Each ssh or docker run costs seconds under emulation: few, each doing much.
	edit := filepath.Join(v.rw, "edit")
	os.WriteFile(edit, []byte("first\n"), 0o644)
	out := e.Must("machine", "ssh", name, "--", "grep virtiofs /proc/mounts; cat /mnt/vrw/edit")
	if !strings.Contains(out, "/mnt/vrw virtiofs rw") || !strings.Contains(out, "/mnt/vro virtiofs ro") || !strings.Contains(out, "first") {
		t.Fatalf("the guest did not mount the shares over virtiofs, or did not read the host's file:\n%s", out)
	}
	e.CheckBindMount(name, v.rw)
	checkCoherent(t, e, name, v.rw, "/mnt/vrw")
	checkHeld(t, e, name, v.rw, "/mnt/vrw", heldOld)

	// An edit on the host shows in the guest within virtiofsd's cache timeout.
	os.WriteFile(edit, []byte("second, longer\n"), 0o644)
	machinetest.Eventually(t, 30*time.Second, "the host's edit in the guest", func() bool {
		out, _ := e.Run("machine", "ssh", name, "--", "cat /mnt/vrw/edit")
		return strings.TrimSpace(out) == "second, longer"
	})

	// Read-only is the host's doing: neither a container nor root remounting the share
	// read-write in the guest can write.
	os.WriteFile(filepath.Join(v.ro, "ro-probe"), []byte("visible\n"), 0o644)
	out, err := e.DockerRun(name, "run", "--rm", "-v", v.ro+":/src", machinetest.TestImage, "sh", "-c", "cat /src/ro-probe; echo x > /src/nope")
	if err == nil || !strings.Contains(out, "visible") {
		t.Fatalf("a container on the read-only share: read %q, write error %v", out, err)
	}
	out, err = e.Run("machine", "ssh", name, "--", "mount -o remount,rw /mnt/vro && echo remounted && touch /mnt/vro/nope")
	if err == nil || !strings.Contains(out, "remounted") {
		t.Fatalf("after a remount read-write in the guest (err %v): %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(v.ro, "nope")); err == nil {
		t.Fatal("a file got into the read-only share")
	}
}

// checkStopped: stop shut the machine down cold, said why, and left no virtiofsd.
func (v virtiofsShares) checkStopped(t *testing.T, stopOut string) {
	t.Helper()
	if !strings.Contains(stopOut, "Could not suspend") || !strings.Contains(stopOut, "virtiofs") {
		t.Errorf("stop of a machine with virtiofs shares did not say why it shut down: %s", stopOut)
	}
	if pids := virtiofsds(v.rw, v.ro); len(pids) > 0 {
		t.Fatalf("virtiofsd outlived its VM: pids %v", pids)
	}
}

// virtiofsds are the pids of the virtiofsd processes that serve any of dirs.
func virtiofsds(dirs ...string) []string {
	var pids []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		for _, d := range dirs {
			if strings.Contains(cmd, "virtiofsd") && strings.Contains(cmd, d) {
				pids = append(pids, filepath.Base(filepath.Dir(p)))
				break
			}
		}
	}
	return pids
}
