// Package vz is the macOS backend on Apple's Virtualization.framework (through
// github.com/Code-Hex/vz). The VM runs inside the host agent's process: there is no child
// process, so the agent must be signed with the com.apple.security.virtualization
// entitlement (vz.entitlements next to this file).
//
// The pure parts (resource limits, option defaults) build on every OS so that they are
// tested on Linux; everything that touches the framework is in *_darwin.go.
package vz

import (
	"fmt"
	"net"
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
