//go:build linux

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/machine/machinetest"
)

// TestArm64Boot boots the arm64 guest image under qemu-system-aarch64 (TCG on an x86
// host) through the CLI, with the devices vz gives it (backend qemu-vz: a virtio console
// as the only console, console=hvc0 in place of the image's ttyAMA0, and a datagram NIC),
// as an Apple silicon Mac boots it, and proves that the engine that answered is an arm64
// one by running an arm64 container whose published port echoes back on the host.
func TestArm64Boot(t *testing.T) {
	machinetest.Enabled(t)
	img := os.Getenv("SKIFF_IMAGE_ARM64")
	if img == "" {
		img = filepath.Join(machinetest.RepoRoot(t), "images", "out", "arm64")
	}
	if _, err := os.Stat(filepath.Join(img, "manifest.json")); err != nil {
		t.Skipf("no arm64 guest image at %s (build it with `make image ARCH=arm64`, or set SKIFF_IMAGE_ARM64)", img)
	}
	if _, err := exec.LookPath("qemu-system-aarch64"); err != nil {
		t.Fatal("qemu-system-aarch64 not found: install qemu-system-arm (installer/dev/deps.sh)")
	}
	t.Setenv("SKIFF_IMAGE", img)
	e := machinetest.New(t)
	e.Must("machine", "init", "arm", "--backend", "qemu-vz", "--cpus", "2", "--memory", "2G", "--disk-size", "4G", "--no-home-share")
	if arch := strings.TrimSpace(e.Must("machine", "inspect", "arm", "--format", "{{.Spec.Arch}}")); arch != "arm64" {
		t.Fatalf("a machine from the arm64 image has arch %q", arch)
	}
	began := time.Now()
	e.Must("machine", "start", "arm")
	t.Logf("arm64 machine answered after %s (TCG, for information only)", time.Since(began).Round(time.Second))

	if got := strings.TrimSpace(e.MustDocker("arm", "version", "--format", "{{.Server.Os}}/{{.Server.Arch}}")); got != "linux/arm64" {
		t.Fatalf("engine reports %q, want linux/arm64", got)
	}
	if got := strings.TrimSpace(e.Must("machine", "ssh", "arm", "--", "uname", "-m")); got != "aarch64" {
		t.Fatalf("guest uname -m = %q, want aarch64", got)
	}
	if out := e.Must("machine", "ssh", "arm", "--", "cat /proc/consoles /proc/cmdline"); !strings.Contains(out, "hvc0") || strings.Contains(out, "ttyAMA0") {
		t.Fatalf("the guest's consoles and command line: %q; want hvc0 only, as on vz", out)
	}

	// An arm64 binary in a container, reached through a published port on the host.
	loadArm64Echo(t, e, "arm")
	port := freeTCPPort(t)
	e.MustDocker("arm", "run", "-d", "--name", "echo", "-p", fmt.Sprintf("127.0.0.1:%d:7000", port), "skiff-test/echod-arm64", "/echod", "-tcp", ":7000")
	var reply []byte
	machinetest.Eventually(t, 3*time.Minute, "the arm64 container's echo on the host port", func() bool {
		reply = echoTCP(fmt.Sprintf("127.0.0.1:%d", port), "hello arm64")
		return string(reply) == "hello arm64"
	})
	e.Must("machine", "stop", "arm")
}

// loadArm64Echo imports an image holding only the echo server built for linux/arm64.
func loadArm64Echo(t *testing.T, e *machinetest.Env, name string) {
	t.Helper()
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "echod"), "./machine/machinetest/echod")
	build.Dir = machinetest.RepoRoot(t)
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build echod for arm64: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tar := exec.CommandContext(ctx, "tar", "-C", dir, "-c", "echod")
	imp := e.DockerCmd(ctx, name, "import", "--platform", "linux/arm64", "-", "skiff-test/echod-arm64")
	var out bytes.Buffer
	imp.Stdout, imp.Stderr = &out, &out
	var err error
	if imp.Stdin, err = tar.StdoutPipe(); err != nil {
		t.Fatal(err)
	}
	if err := imp.Start(); err != nil {
		t.Fatal(err)
	}
	if err := tar.Run(); err != nil {
		t.Fatal(err)
	}
	if err := imp.Wait(); err != nil {
		t.Fatalf("docker import: %v: %s", err, out.String())
	}
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// echoTCP sends msg over TCP and returns what came back before the peer closed or 5s passed.
func echoTCP(addr, msg string) []byte {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return nil
	}
	c.(*net.TCPConn).CloseWrite()
	b, _ := io.ReadAll(c)
	return b
}
