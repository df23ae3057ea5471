// Package vz is the macOS backend on Apple's Virtualization.framework (through
// github.com/Code-Hex/vz). The VM runs inside the host agent's process: there is no child
// process, so the agent must be signed with the com.apple.security.virtualization
// entitlement (vz.entitlements next to this file).
//
// The pure parts (resource limits, option defaults) build on every OS so that they are
// tested on Linux; everything that touches the framework is in *_darwin.go.
package vz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/skiff-dev/skiff/vmm"
)

// RosettaTag is the virtiofs tag of the Rosetta share. The guest mounts it and registers
// it with binfmt_misc to run amd64 binaries on Apple silicon.
const RosettaTag = "rosetta"

// DefaultMTU matches the embedded user-mode network's MTU (forward/usernet.MTU): a larger
// guest MTU than the NIC carries would drop every big frame.
const DefaultMTU = 65520

// Options tune the backend. The zero value is what users get.
type Options struct {
	// Rosetta says whether to share Rosetta with arm64 guests when the host has it.
	Rosetta RosettaMode
	// MTU of the file-handle NIC; 0 means DefaultMTU. macOS before 13 only does 1500.
	MTU int
}

// RosettaMode selects whether the guest gets Rosetta.
type RosettaMode int

const (
	// RosettaAuto shares Rosetta when it is installed (arm64, macOS 13+).
	RosettaAuto RosettaMode = iota
	// RosettaOff never shares it.
	RosettaOff
)

// Backend runs VMs with Virtualization.framework.
type Backend struct {
	Options Options
}

// New returns a vz backend.
func New(o Options) *Backend { return &Backend{Options: o} }

// Name implements vmm.Backend.
func (b *Backend) Name() string { return "vz" }

// ShareType implements vmm.ShareKind: vz has virtiofs built in and no 9p.
func (b *Backend) ShareType() string { return "virtiofs" }

func (b *Backend) mtu() int {
	if b.Options.MTU > 0 {
		return b.Options.MTU
	}
	return DefaultMTU
}

// limits are vz's bounds for one VM, read from the framework at run time.
type limits struct {
	MinCPUs, MaxCPUs     uint
	MinMemory, MaxMemory uint64 // bytes
}

// checkResources rejects a CPU count or memory size that vz would refuse, saying which
// range is allowed rather than vz's generic "invalid configuration".
func checkResources(cpus int, memoryMiB int64, l limits) error {
	if cpus < 1 || uint(cpus) < l.MinCPUs || uint(cpus) > l.MaxCPUs {
		return fmt.Errorf("vz: %d CPUs requested; this Mac allows %d to %d (skiff machine set --cpus N)", cpus, l.MinCPUs, l.MaxCPUs)
	}
	mem := uint64(memoryMiB) << 20
	if memoryMiB < 1 || mem < l.MinMemory || mem > l.MaxMemory {
		return fmt.Errorf("vz: %d MiB of memory requested; this Mac allows %d to %d MiB (skiff machine set --memory N)",
			memoryMiB, l.MinMemory>>20, l.MaxMemory>>20)
	}
	// vz wants whole MiB multiples; MiB input guarantees it.
	return nil
}

// parseMAC checks the configured MAC before vz turns a typo into an opaque error.
func parseMAC(s string) (net.HardwareAddr, error) {
	mac, err := net.ParseMAC(s)
	if err != nil {
		return nil, fmt.Errorf("vz: invalid MAC address %q: %w", s, err)
	}
	if len(mac) != 6 {
		return nil, fmt.Errorf("vz: MAC address %q is not 6 bytes", s)
	}
	return mac, nil
}

// vmShape is everything the vz configuration is built from. Start and Restore build the
// VM from it alone and StateKey hashes it, so a new input to the VM cannot be left out of
// the key: a saved state only loads into a compatibly configured VM.
type vmShape struct {
	// Devices names the fixed devices newMachine adds besides disks, NIC and shares;
	// change it together with them.
	Devices   string
	CPUs      int
	MemoryMiB int64
	Kernel    string
	Initrd    string
	Cmdline   string
	Disks     []vmm.Disk
	Shares    []vmm.Share
	MAC       string
	MTU       int
	Rosetta   bool // the Rosetta share is attached
}

const fixedDevices = "virtio-console,virtio-vsock,virtio-entropy,virtio-balloon"

// shape is the VM Start would build for cfg; rosetta says whether the host can share Rosetta.
func (b *Backend) shape(cfg vmm.Config, rosetta bool) vmShape {
	return vmShape{
		Devices: fixedDevices, CPUs: cfg.CPUs, MemoryMiB: cfg.MemoryMiB,
		// vz has no UART: its one console is a virtio console, whatever the image names.
		Kernel: cfg.Kernel, Initrd: cfg.Initrd, Cmdline: vmm.WithConsole(cfg.Cmdline, "hvc0"),
		Disks: cfg.Disks, Shares: cfg.Shares, MAC: cfg.MAC, MTU: b.mtu(),
		Rosetta: rosetta && b.Options.Rosetta == RosettaAuto && cfg.Arch == "arm64",
	}
}

// reclaimOf is how a vz VM returns memory: only through its traditional balloon, which
// the host agent's policy drives (ReclaimOff leaves it alone). Virtualization.framework
// has no free page reporting.
func reclaimOf(cfg vmm.Config) (string, error) {
	return vmm.ReclaimOf("vz", cfg, vmm.ReclaimBalloon, vmm.ReclaimOff)
}

// stateFile is the saved state inside the state directory.
const stateFile = "vz-machine-state"

// stateKey names what a vz save file depends on: the VM configuration and the macOS
// build. Apple documents that a restore fails on another configuration, that files from
// a newer macOS are rejected and that an update may make older files unloadable.
func stateKey(s vmShape, osVersion, osBuild string) string {
	j, err := json.Marshal(s)
	if err != nil {
		panic(err) // plain data: cannot fail
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s", j, osVersion, osBuild)
	return "vz-" + hex.EncodeToString(h.Sum(nil))[:32]
}

// checkWarm says whether this Mac can save and restore VMs: Virtualization.framework
// has it from macOS 14, and vz v3.7.1 exposes it only on Apple silicon.
func checkWarm(goarch, osVersion string) error {
	if goarch != "arm64" {
		return fmt.Errorf("vz: warm start needs Apple silicon (vz exposes save/restore only on arm64): %w", vmm.ErrNotSupported)
	}
	major, err := macOSMajor(osVersion)
	if err != nil {
		return fmt.Errorf("vz: warm start: %w", err)
	}
	if major < 14 {
		return fmt.Errorf("vz: warm start needs macOS 14 or newer, this Mac runs %s: %w", osVersion, vmm.ErrNotSupported)
	}
	return nil
}

// macOSMajor parses the major version of a product version such as "14.2.1".
func macOSMajor(v string) (int, error) {
	head, _, _ := strings.Cut(strings.TrimSpace(v), ".")
	n, err := strconv.Atoi(head)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("unrecognised macOS version %q", v)
	}
	return n, nil
}

// DiscardState implements vmm.Warm: vz keeps nothing of a saved state outside it.
func (b *Backend) DiscardState(ctx context.Context, cfg vmm.Config) error { return nil }

// DiskFiles implements vmm.Warm: vz writes to the disks' own files.
func (b *Backend) DiskFiles(cfg vmm.Config) []string { return cfg.DiskPaths() }

var _ vmm.Warm = (*Backend)(nil)
