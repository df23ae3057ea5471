//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/machine/machinetest"
)

// TestVZDevices boots the image the way vz does where QEMU can (backend qemu-vz): the only
// console is a virtio console (the guest is told console=hvc0 whatever the image names)
// and the NIC hands the user-mode network one Ethernet frame per datagram, the path
// vmm.Network.ServeDatagram serves for vz. The engine API, a container's published port
// and a suspend and resume all cross that network.
func TestVZDevices(t *testing.T) {
	e := machinetest.New(t)
	e.Must("machine", "init", "vzdev", "--backend", "qemu-vz", "--cpus", "2", "--memory", "1G", "--disk-size", "4G", "--no-home-share")
	e.Must("machine", "start", "vzdev")

	if out := e.Must("machine", "ssh", "vzdev", "--", "cat /proc/consoles; cat /proc/cmdline"); !strings.Contains(out, "hvc0") || strings.Contains(out, "ttyS0") {
		t.Fatalf("the guest's consoles and command line: %q; want hvc0 only", out)
	}
	if log, _ := os.ReadFile(filepath.Join(e.Home, "machines", "vzdev", "serial.log")); !strings.Contains(string(log), "answers (API") {
		t.Fatalf("the virtio console did not carry the guest's log to serial.log:\n%s", log)
	}

	// This host has no vhost-vsock: the host reaches the agent through the network, and
	// inspect says so.
	if got := strings.TrimSpace(e.Must("machine", "inspect", "vzdev", "--format", "{{.Status.Agent.Transport}}")); got != "network" {
		t.Errorf("inspect says the transport runs over %q, want network", got)
	}
	e.LoadBusybox("vzdev")
	port := machinetest.FreePort(t)
	e.MustDocker("vzdev", "run", "-d", "--name", "web", "-p", fmt.Sprintf("127.0.0.1:%d:80", port), machinetest.TestImage,
		"sh", "-c", "mkdir -p /www && echo over-datagrams > /www/index.html && httpd -f -p 80 -h /www")
	get := func(when string) {
		t.Helper()
		machinetest.Eventually(t, time.Minute, when+": the published port", func() bool {
			return strings.Contains(string(echoTCP(fmt.Sprintf("127.0.0.1:%d", port), "GET / HTTP/1.0\r\n\r\n")), "over-datagrams")
		})
	}
	get("after boot")

	// The saved VM comes back on a new socket pair with its NIC state.
	e.Must("machine", "stop", "vzdev")
	e.Must("machine", "start", "vzdev")
	var v bootInfo
	if err := json.Unmarshal([]byte(e.Must("machine", "inspect", "vzdev", "--format", "json")), &v); err != nil {
		t.Fatal(err)
	}
	if warm, why := v.warm(); !warm {
		t.Errorf("the start after stop booted cold (%s); want a resume with the datagram NIC", why)
	}
	get("after stop and start")
	e.Must("machine", "rm", "-f", "vzdev")
}
