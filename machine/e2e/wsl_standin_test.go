//go:build linux

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/machine/machinetest"
)

// TestWSLStandIn runs a machine on backend qemu-wsl: the image's wsl-rootfs.tar, imported
// into the distro's disk, and `skiff-agent boot-wsl --network wsl` under the WSL
// stand-in's init, through a whole life: engine, a container, a clean stop, a second
// start that keeps the distro, a `wsl --terminate`, rm.
func TestWSLStandIn(t *testing.T) {
	e := machinetest.New(t)
	t.Setenv("SKIFF_WSL_INIT", machinetest.BuildWSLInit(t))
	e.Must("machine", "init", "wsl", "--backend", "qemu-wsl", "--cpus", "2", "--memory", "2G", "--disk-size", "8G", "--no-home-share")
	e.Must("machine", "start", "wsl")
	serial := filepath.Join(e.Home, "machines", "wsl", "serial.log")
	log := readLog(t, serial)
	for _, want := range []string{
		"wsl-standin: imported the root filesystem",
		"wsl-standin: running /usr/sbin/skiff-agent boot-wsl --seed /mnt/c/skiff/wsl/seed.img --network wsl",
		"skiff-agent: engine docker answers",
	} {
		if !strings.Contains(log, want) {
			t.Fatalf("the console lacks %q:\n%s", want, tail(log, 40))
		}
	}

	e.LoadBusybox("wsl")
	if out := e.MustDocker("wsl", "run", "--rm", machinetest.TestImage, "echo", "hello from wsl"); strings.TrimSpace(out) != "hello from wsl" {
		t.Fatalf("docker run printed %q", out)
	}
	e.MustDocker("wsl", "run", "--name", "keeper", machinetest.TestImage, "sh", "-c", "echo precious > /f")

	// A stop asks the agent, which stops dockerd, then containerd, and exits; the stand-in
	// then switches the VM off as WSL stops a distro whose command ended.
	e.Must("machine", "stop", "wsl")
	if s := state(e, "wsl"); s != "stopped" {
		t.Fatalf("after stop the machine reads %q", s)
	}
	log = readLog(t, serial) // QEMU starts the file afresh at each boot
	for _, want := range []string{"skiff-agent: dockerd exited: 0", "skiff-agent: containerd exited: 0", "wsl-standin: /usr/sbin/skiff-agent exited: exit 0"} {
		if !strings.Contains(log, want) {
			t.Fatalf("the engine did not stop cleanly: the console lacks %q:\n%s", want, tail(log, 30))
		}
	}
	if strings.Index(log, "dockerd exited") > strings.Index(log, "containerd exited") {
		t.Errorf("containerd stopped before dockerd:\n%s", tail(log, 30))
	}

	// The distro's disk keeps what the engine wrote; the tar is imported once.
	e.Must("machine", "start", "wsl")
	if log := readLog(t, serial); strings.Contains(log, "imported the root filesystem") {
		t.Errorf("the second boot imported the root filesystem again:\n%s", tail(log, 30))
	}
	if out := e.MustDocker("wsl", "ps", "-a", "--filter", "name=keeper", "--format", "{{.Names}}"); strings.TrimSpace(out) != "keeper" {
		t.Fatalf("container keeper is gone after stop and start (ps: %q)", out)
	}

	// `wsl --terminate`, which the stand-in does on Ctrl-Alt-Del: SIGTERM to every process
	// of the distro, the agent among them, which still stops the engine before it exits.
	ctrlAltDel(t, filepath.Join(e.Home, "run", "wsl", "qmp.sock"))
	machinetest.Eventually(t, time.Minute, "the VM to stop after the terminate", func() bool { return state(e, "wsl") != "running" })
	log = readLog(t, serial)
	for _, want := range []string{"wsl-standin: interrupt: terminating the distro", "skiff-agent: terminated: stopping the engine",
		"skiff-agent: dockerd exited: 0", "wsl-standin: /usr/sbin/skiff-agent exited: exit 0"} {
		if !strings.Contains(log, want) {
			t.Fatalf("the terminate did not stop the engine cleanly: the console lacks %q:\n%s", want, tail(log, 30))
		}
	}
	e.Must("machine", "rm", "-f", "wsl")
	if _, err := os.Stat(filepath.Join(e.Home, "machines", "wsl")); !os.IsNotExist(err) {
		t.Fatalf("rm -f left the machine directory: %v", err)
	}
}

// TestWSLStandInImageWithoutRootfs: on qemu-wsl, `machine init` of an image that
// predates wsl-rootfs.tar fails with one line naming the file (vmm.ImageChecker), and
// leaves no machine behind.
func TestWSLStandInImageWithoutRootfs(t *testing.T) {
	e := machinetest.New(t)
	old := imageWithout(t, e.Image, "wsl-rootfs")
	out, err := e.Run("machine", "init", "old", "--backend", "qemu-wsl", "--image", old, "--cpus", "1", "--memory", "1G", "--disk-size", "4G", "--no-home-share")
	if err == nil {
		t.Fatalf("init on an image without wsl-rootfs.tar succeeded:\n%s", out)
	}
	// The image's install prints its progress first; the error is one line after it.
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines[:len(lines)-1] {
		if !strings.HasPrefix(l, "unpacking ") {
			t.Fatalf("want one line naming wsl-rootfs.tar after the install's progress, got:\n%s", out)
		}
	}
	if !strings.Contains(lines[len(lines)-1], "wsl-rootfs.tar") {
		t.Fatalf("the error does not name wsl-rootfs.tar:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(e.Home, "machines", "old")); !os.IsNotExist(err) {
		t.Errorf("the failed init left the machine directory: %v", err)
	}
}

// imageWithout is a copy of the image in dir (its files linked) whose manifest lists no
// file of role.
func imageWithout(t *testing.T, dir, role string) string {
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var files []any
	for _, f := range m["files"].([]any) {
		if f.(map[string]any)["role"] != role {
			files = append(files, f)
		}
	}
	out := t.TempDir()
	for _, f := range files {
		name := f.(map[string]any)["name"].(string)
		if err := os.Symlink(filepath.Join(dir, name), filepath.Join(out, name)); err != nil {
			t.Fatal(err)
		}
	}
	m["files"] = files
	b, _ = json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(out, "manifest.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// ctrlAltDel presses Ctrl-Alt-Del on the VM's keyboard through QEMU's monitor.
func ctrlAltDel(t *testing.T, qmpSock string) {
	t.Helper()
	c, err := net.Dial("unix", qmpSock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	r.ReadString('\n') // the greeting
	for _, cmd := range []string{`{"execute":"qmp_capabilities"}`,
		`{"execute":"send-key","arguments":{"keys":[{"type":"qcode","data":"ctrl"},{"type":"qcode","data":"alt"},{"type":"qcode","data":"delete"}]}}`} {
		fmt.Fprintln(c, cmd)
		if l, err := r.ReadString('\n'); err != nil || !strings.Contains(l, `"return"`) {
			t.Fatalf("QMP %s: %q %v", cmd, l, err)
		}
	}
}

func readLog(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
