package guestinit

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// DockerdBin goes first on dockerd's PATH, and dockerd's alone: its crun (also its runc)
// answers the probes dockerd runs at every start from what an earlier boot recorded
// (images/helpers/runtime-probes.c), its modprobe answers for modules already loaded
// (images/helpers/modprobe-filter.c), and both pass anything else to the real program.
const DockerdBin = "/usr/libexec/skiff/dockerd-bin"

// RuntimeProbeRecords is where the answers are kept: on the data disk, so that every boot
// after the first has them.
const RuntimeProbeRecords = DataMount + "/cache/runtime"

// Runtime is the image's OCI runtime, crun (the docker layer's /usr/sbin/runc links to it).
const Runtime = "/usr/bin/crun"

// runtimeProbes are the probes, by record name.
var runtimeProbes = [][2]string{{"features", "features"}, {"version", "--version"}}

// runtimeProbeKey is a record's first line: what the answers depend on (the runtime's
// binary, the kernel and its command line), in the form the helper computes it.
func runtimeProbeKey(runtime string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(runtime, &st); err != nil {
		return "", fmt.Errorf("stat %s: %w", runtime, err)
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", fmt.Errorf("uname: %w", err)
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d %d.%09d %s %s\n", st.Size, st.Mtim.Sec, st.Mtim.Nsec, unix.ByteSliceToString(u.Release[:]),
		strings.TrimRight(string(cmdline), "\n ")), nil
}

// RecordRuntimeProbes runs the runtime's probes and records their answers in dir, keeping
// records that already match. run runs a command to completion (the init's reaper, in the
// guest).
func RecordRuntimeProbes(runtime, dir string, run func(*exec.Cmd) error) error {
	key, err := runtimeProbeKey(runtime)
	if err != nil {
		return err
	}
	for _, p := range runtimeProbes {
		path := filepath.Join(dir, p[0])
		if b, err := os.ReadFile(path); err == nil && strings.HasPrefix(string(b), key) {
			continue
		}
		var out bytes.Buffer
		cmd := exec.Command(runtime, p[1])
		cmd.Stdout = &out
		if err := run(cmd); err != nil {
			return fmt.Errorf("%s %s: %w", runtime, p[1], err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		// Whole or not at all: the helper trusts a record whose key matches.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, append([]byte(key), out.Bytes()...), 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
	}
	return nil
}

// recordRuntimeProbes records the probes' answers for the next boot, once the engine is up.
func (s *System) recordRuntimeProbes() {
	if s.Seed.Engine == "podman" {
		return
	}
	if !haveDockerdBin() {
		return
	}
	err := RecordRuntimeProbes(Runtime, RuntimeProbeRecords, func(cmd *exec.Cmd) error {
		ws, err := s.Reaper.Run(cmd)
		if err == nil && ws.ExitStatus() != 0 {
			err = fmt.Errorf("exit status %d", ws.ExitStatus())
		}
		return err
	})
	if err != nil {
		s.Log("the runtime's probes are not recorded, so the next engine start runs them: %v", err)
	}
}

// EngineHandoff is where dockerd takes the API streams the agent hands over to it
// (forward/guest); its directory is owner-only.
const EngineHandoff = "/run/skiff/engine-handoff.sock"

// dockerdEnv is dockerd's environment: the agent's, with DockerdBin first on PATH when the
// image has it, and where to take handed-over streams (SKIFF_ENGINE_HANDOFF: Skiff's
// engine, images/engine/handoff, reads it; another dockerd ignores it).
func dockerdEnv() []string {
	env := append(os.Environ(), "SKIFF_ENGINE_HANDOFF="+EngineHandoff)
	if haveDockerdBin() {
		env = append(env, "PATH="+DockerdBin+":"+os.Getenv("PATH"))
	}
	return env
}

// haveDockerdBin says whether the image has the helpers (an older image does not).
func haveDockerdBin() bool {
	_, err := os.Stat(filepath.Join(DockerdBin, "crun"))
	return err == nil
}
