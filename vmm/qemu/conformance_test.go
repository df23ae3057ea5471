package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/forward"
	"github.com/skiff-dev/skiff/forward/transport"
	"github.com/skiff-dev/skiff/forward/usernet"
	"github.com/skiff-dev/skiff/images"
	"github.com/skiff-dev/skiff/images/seed"
	"github.com/skiff-dev/skiff/machine/machinetest"
	"github.com/skiff-dev/skiff/vmm"
	"github.com/skiff-dev/skiff/vmm/vmmtest"
)

// TestConformance runs the backend suite against real QEMU VMs booting the real image.
func TestConformance(t *testing.T) {
	vmmtest.Run(t, conformance(t, &Backend{}))
}

// TestConformanceHyperVBoot runs it on what a Hyper-V VM boots: the image's EFI boot disk
// under OVMF, the disks found by SCSI LUN (uefi.go).
func TestConformanceHyperVBoot(t *testing.T) {
	vmmtest.Run(t, conformance(t, &Backend{Boot: BootHyperV}))
}

// conformance is the suite's harness for b: machines booting the image of `make image`
// (or SKIFF_IMAGE), installed as a machine gets it.
func conformance(t *testing.T, b vmm.Backend) vmmtest.Harness {
	machinetest.Enabled(t)
	img := os.Getenv("SKIFF_IMAGE")
	if img == "" {
		img = filepath.Join(machinetest.RepoRoot(t), "images", "out", runtime.GOARCH)
	}
	// Installed as a machine gets it: the build's root and initrd are packed for download,
	// and only the optional files the backend boots from come along.
	var opt images.Options
	if c, ok := b.(vmm.ImageChecker); ok {
		opt.Roles = c.ImageRoles()
	}
	// The docker engine's layer, as a docker machine attaches it (machine.EngineLayerRole):
	// not where the backend boots WSL's tarball, which carries it.
	engine := ""
	if !slices.Contains(opt.Roles, images.RoleWSLRootfs) {
		engine = images.EngineRole("docker")
		opt.Roles = append(opt.Roles, engine)
	}
	inst, err := images.Install(context.Background(), img, vmmtest.TempDir(t), opt)
	if err != nil {
		t.Fatalf("no guest image at %s (run `make image`): %v", img, err)
	}
	paths := inst.Manifest.RolePaths(inst.Dir)
	nets := map[string]*usernet.Network{}
	return vmmtest.Harness{
		Backend: b,
		Config: func(t *testing.T) vmm.Config {
			dir := vmmtest.TempDir(t)
			data := filepath.Join(dir, "data.img")
			f, _ := os.Create(data)
			f.Truncate(2 << 30)
			f.Close()
			sd := &seed.Seed{Hostname: "conformance", Engine: "docker", Secret: make([]byte, 32),
				Network:   seed.Network{Address: usernet.GuestIP + "/24", Gateway: usernet.GatewayIP, DNS: []string{usernet.GatewayIP}, MTU: usernet.MTU},
				AgentPort: 1024, HostPort: 1025, HostTimeNano: time.Now().UnixNano()}
			b, _ := sd.Marshal()
			os.WriteFile(filepath.Join(dir, "seed.img"), b, 0o600)
			n, err := usernet.New(usernet.Options{Secret: make([]byte, 32)})
			if err != nil {
				t.Fatal(err)
			}
			nets[dir] = n
			disks := []vmm.Disk{
				{Path: paths["root"], Serial: "skiff-root", ReadOnly: true},
				{Path: data, Serial: "skiff-data", Discard: true},
				{Path: filepath.Join(dir, "seed.img"), Serial: "skiff-seed", ReadOnly: true},
			}
			if layer := paths[engine]; engine != "" && layer != "" {
				disks = append(disks, vmm.Disk{Path: layer, Serial: "skiff-engine", ReadOnly: true})
			}
			return vmm.Config{
				Name: "conformance", Dir: dir, RunDir: dir, Arch: runtime.GOARCH, CPUs: 2, MemoryMiB: 1024,
				Kernel: paths["kernel"], Initrd: paths["initrd"],
				Cmdline:   inst.Manifest.BootCmdline(),
				Disks:     disks,
				SerialLog: filepath.Join(dir, "serial.log"), Network: n, MAC: usernet.GuestMAC,
			}
		},
		// The guest agent writes to the console once the engine answers; its line carries
		// the guest's uptime, logged with the host's time since Start for boot timings.
		GuestUp: func(ctx context.Context, t *testing.T, cfg vmm.Config, vm vmm.VM) error {
			started := time.Now()
			for {
				b, _ := os.ReadFile(cfg.SerialLog)
				if up, ok := engineReady(b); ok {
					t.Logf("engine ready %.1fs after Start, at guest uptime %.2fs", time.Since(started).Seconds(), up)
					return nil
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(200 * time.Millisecond):
				}
			}
		},
		// The guest agent answers an authenticated control call over the virtual network.
		Alive: func(ctx context.Context, t *testing.T, cfg vmm.Config, vm vmm.VM) error {
			n := nets[cfg.Dir]
			c := &transport.Client{Secret: make([]byte, 32), Raw: func(ctx context.Context) (net.Conn, error) {
				return n.DialGuest(ctx, 1024)
			}}
			ctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			conn, err := c.Dial(ctx, forward.ServiceControl)
			if err != nil {
				return err
			}
			defer conn.Close()
			json.NewEncoder(conn).Encode(forward.ControlRequest{Op: forward.OpInfo})
			var resp forward.ControlResponse
			if err := json.NewDecoder(conn).Decode(&resp); err != nil {
				return err
			}
			if resp.Info == nil || resp.Info.UptimeSeconds <= 0 {
				return fmt.Errorf("guest info %+v", resp)
			}
			t.Logf("restored guest: uptime %ds, engine %s", resp.Info.UptimeSeconds, resp.Info.EngineAPI)
			return nil
		},
	}
}

// readyLine is the guest agent's console line once the engine answers, stamped with the
// guest's uptime.
var readyLine = regexp.MustCompile(`\[\s*([0-9.]+)\] skiff-agent: engine \S+ answers \(API`)

// engineReady says whether console shows the engine answering, and at what guest uptime.
func engineReady(console []byte) (uptime float64, ok bool) {
	m := readyLine.FindSubmatch(console)
	if m == nil {
		return 0, false
	}
	up, err := strconv.ParseFloat(string(m[1]), 64)
	return up, err == nil
}
