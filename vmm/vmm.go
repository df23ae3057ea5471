// Package vmm puts every hypervisor behind one small interface. A backend boots a VM from a
// Config and hands back a handle; everything else a backend can do (prepare artifacts, dial
// the guest over vsock, suspend) is an optional interface found by type assertion, so a
// new backend implements only what its hypervisor has.
package vmm

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Config is everything a backend needs to boot one machine. It is backend-neutral: each
// backend maps it onto its own hypervisor.
type Config struct {
	Name      string
	Dir       string // the machine directory, for backend state files
	RunDir    string // short directory for sockets
	Arch      string // amd64 or arm64 (the guest's)
	CPUs      int
	MemoryMiB int64
	Kernel    string
	// KernelELF is the same kernel uncompressed, with a PVH entry, when the image has one.
	// Backends that can boot it directly (QEMU on x86) skip the kernel's decompression.
	KernelELF string
	Initrd    string
	Cmdline   string
	Disks     []Disk
	Shares    []Share
	SerialLog string
	// Network is the embedded user-mode network the VM's NIC attaches to.
	Network Network
	MAC     string
	// Group, when set, is a second NIC on the network the machine shares with the other
	// machines of its group (forward/usernet/netgroup). Backends that cannot attach one
	// refuse to start.
	Group *GroupNIC
	// Reclaim is how guest memory the guest no longer uses goes back to the host: one of
	// the Reclaim constants; ReclaimAuto is the backend's best.
	Reclaim string
}

// GroupNIC is a VM's NIC on its group's network.
type GroupNIC struct {
	Network Network
	MAC     string
}

// How a VM's unused guest memory goes back to the host.
const (
	ReclaimAuto = "" // the backend's best
	// ReclaimFreePageReporting: the guest reports the pages it frees and the hypervisor
	// drops them (QEMU's virtio-balloon free page reporting); nothing to drive.
	ReclaimFreePageReporting = "free-page-reporting"
	// ReclaimBalloon: a traditional balloon, which returns nothing unless the host sets a
	// target; the host agent's memory policy drives it (vmm.Balloon). vz has only this.
	ReclaimBalloon = "balloon"
	// ReclaimDynamicMemory: the hypervisor balances memory itself (Hyper-V, with the
	// guest's hv_balloon).
	ReclaimDynamicMemory = "dynamic-memory"
	// ReclaimOff: the VM keeps what its guest once used.
	ReclaimOff = "off"
)

// Disk is a block device. The guest finds disks by Serial, never by probe order.
type Disk struct {
	Path     string
	Serial   string
	ReadOnly bool
	// Discard passes guest TRIM through so freed blocks shrink the host file.
	Discard bool
}

// Share is a host folder exported to the guest under Tag.
type Share struct {
	Tag      string
	HostPath string
	ReadOnly bool
	// Type is how the guest mounts it ("9p", "virtiofs", ...); empty is the backend's
	// own (ShareKind). Backends serve the types they can and refuse the others.
	Type string
}

// Network serves the VM's NIC on the host side. Backends call the method that matches how
// their hypervisor hands over Ethernet frames.
type Network interface {
	// ServeStream serves frames with a 4-byte big-endian length prefix (QEMU -netdev stream).
	ServeStream(ctx context.Context, conn net.Conn) error
	// ServeDatagram serves one frame per datagram (vz/vfkit unixgram).
	ServeDatagram(ctx context.Context, conn net.Conn) error
	// ServeGuestStream serves frames as ServeStream does on a stream the guest opened
	// itself (hvsock, vsock). Any VM on the host can open one, so the guest first proves
	// it knows the machine's secret.
	ServeGuestStream(ctx context.Context, conn net.Conn) error
}

// Backend boots VMs on one hypervisor.
type Backend interface {
	// Name is the backend's name as users write it: qemu, vz, wsl2, hyperv.
	Name() string
	// Check reports whether this host can run the backend. Its error says how to fix it.
	Check(ctx context.Context) error
	// Start boots the VM. It returns once the hypervisor accepted the VM, not when the guest is up.
	Start(ctx context.Context, cfg Config) (VM, error)
}

// VM is a running virtual machine.
type VM interface {
	// Wait blocks until the VM has stopped. A nil error means it powered off by itself.
	Wait(ctx context.Context) error
	// Kill stops the VM at once, without asking the guest. It is safe to call twice.
	Kill(ctx context.Context) error
}

// Preparer is implemented by backends that create artifacts before the first start
// (a WSL distro, a Hyper-V VM and its VHDX).
type Preparer interface {
	Prepare(ctx context.Context, cfg Config) error
}

// Remover is implemented by backends whose artifacts live outside the machine directory.
type Remover interface {
	Remove(ctx context.Context, cfg Config) error
}

// VsockNetworker is implemented by backends whose VMs have no NIC (Hyper-V): the guest
// dials the host's vsock port NetworkVsockPort and the backend serves the stream with
// Network.ServeGuestStream.
type VsockNetworker interface {
	NetworkVsockPort() uint32
}

// HostStreamer is implemented by backends whose guests cannot reach the host's services
// through the user-mode network (WSL on its own network): the guest opens its streams to
// the host on host vsock port HostStreamPort (0: through the network after all), and the
// VM accepts them there (HostListener).
type HostStreamer interface {
	HostStreamPort() uint32
}

// HostListener is implemented by VMs that accept the guest's streams on a host vsock port.
type HostListener interface {
	ListenGuest(port uint32) (net.Listener, error)
}

// ProcessVM is implemented by VMs that are a host process (QEMU), so that status can tell
// whether the VM outlived its agent.
type ProcessVM interface {
	PID() int
}

// GuestDialer is implemented by VMs with a socket device (vsock, hvsock) to reach guest
// ports without the virtual network.
type GuestDialer interface {
	DialGuest(ctx context.Context, port uint32) (net.Conn, error)
}

// ShareKind says which kind of share a backend's guests mount ("9p", "virtiofs",
// "9p-transport"). Backends without it get "9p".
type ShareKind interface {
	ShareType() string
}

// ReclaimOf is the reclaim mode cfg asks of a backend whose best is def and which can also
// do others; a mode the backend lacks is ErrNotSupported, named for it.
func ReclaimOf(backend string, cfg Config, def string, others ...string) (string, error) {
	if cfg.Reclaim == ReclaimAuto || cfg.Reclaim == def || slices.Contains(others, cfg.Reclaim) {
		return cmp.Or(cfg.Reclaim, def), nil
	}
	return "", fmt.Errorf("%s: memory reclaim %q: %w (it has %s)", backend, cfg.Reclaim, ErrNotSupported, strings.Join(append([]string{def}, others...), ", "))
}

// Reclaimer is implemented by VMs that say how their guest's unused memory goes back to
// the host: one of the Reclaim constants.
type Reclaimer interface {
	Reclaim() string
}

// Balloon is implemented by VMs with a traditional memory balloon the host can set: the
// guest gives up memory until what it has left is the target. It is what the host
// agent's memory policy drives when the VM's Reclaim is ReclaimBalloon.
type Balloon interface {
	// SetMemoryTarget asks the guest to shrink (or grow back) to bytes of memory.
	SetMemoryTarget(ctx context.Context, bytes uint64) error
	// MemoryTarget is the guest's memory as the balloon leaves it now.
	MemoryTarget(ctx context.Context) (uint64, error)
}

// Describer is implemented by VMs that can say how they were started (accelerator, hypervisor version).
type Describer interface {
	Describe() map[string]string
}

// Warm is implemented by backends that can save a running VM and start it again from the
// saved state instead of booting it: the warm start. Cold boot stays Start, the same on
// every backend. It is one capability, asked for once, so that whether a machine can
// suspend is known before any of it is tried.
type Warm interface {
	// StateKey names what a saved state depends on besides the disks (hypervisor build,
	// VM shape). A state saved under a different key must not be restored.
	StateKey(ctx context.Context, cfg Config) (string, error)
	// CanSuspend says whether vm, started by this backend, can be suspended now; the error
	// says why not (a device that blocks saving; ErrNotSupported: not on this host). It is
	// cheap and does no work on the VM, so it is asked before the guest is told anything.
	CanSuspend(vm VM) error
	// Suspend saves vm's RAM and device state into the empty directory dir and stops it.
	// The disks are flushed and not written after the save. On error vm runs on.
	Suspend(ctx context.Context, vm VM, dir string) error
	// Restore starts the VM from the state saved in dir; the guest runs on from where it
	// was suspended.
	Restore(ctx context.Context, cfg Config, dir string) (VM, error)
	// DiscardState drops what the backend keeps of a saved state outside dir (Hyper-V
	// keeps it with the VM): a state Skiff decides not to restore must go there too, or
	// the next Start would resume it. Backends that keep it all in dir do nothing.
	DiscardState(ctx context.Context, cfg Config) error
	// DiskFiles are the files the VM writes its disks to, which a saved state is checked
	// against: cfg's disks (Config.DiskPaths), or the backend's own copies of them
	// (Hyper-V's VHDXs).
	DiskFiles(cfg Config) []string
}

// ErrForeignVM marks a VM handed to a backend that did not start it.
var ErrForeignVM = errors.New("not a VM this backend started")

// Own is vm as backend's own VM type T (what its Start and Restore return), for the
// backend methods that take a VM.
func Own[T VM](backend string, vm VM) (T, error) {
	v, ok := vm.(T)
	if !ok {
		return v, fmt.Errorf("%s: %T: %w", backend, vm, ErrForeignVM)
	}
	return v, nil
}

// DiskPaths are the files of cfg's disks.
func (c Config) DiskPaths() []string {
	var out []string
	for _, d := range c.Disks {
		out = append(out, d.Path)
	}
	return out
}

// FeatureSet is what a backend, and a VM it runs, can do: one JSON-able value for the
// host agent's state, built from the optional interfaces.
type FeatureSet struct {
	// WarmStart: stop can save the VM and start resume it.
	WarmStart bool `json:"warmStart"`
	// NoWarmStart says why there is no warm start, when the backend has one elsewhere
	// (a device that blocks saving, a host without it).
	NoWarmStart string `json:"noWarmStart,omitempty"`
	// Vsock: the host reaches the guest over the VM's socket device (vsock, hvsock)
	// rather than through the user-mode network.
	Vsock bool `json:"vsock"`
	// Shares is the kind of share the guest mounts (ShareTypeOf).
	Shares string `json:"shares"`
	// Reclaim is how the running VM's unused memory goes back to the host (Reclaimer).
	Reclaim string `json:"reclaim,omitempty"`
}

// Features says what backend b can do, and with vm (nil before one runs) what that VM
// can do now.
func Features(b Backend, vm VM) FeatureSet {
	f := FeatureSet{Shares: ShareTypeOf(b)}
	if w, ok := b.(Warm); ok {
		f.WarmStart = true
		if vm != nil {
			if err := w.CanSuspend(vm); err != nil {
				f.WarmStart, f.NoWarmStart = false, err.Error()
			}
		}
	}
	if vm != nil {
		_, f.Vsock = vm.(GuestDialer)
		if r, ok := vm.(Reclaimer); ok {
			f.Reclaim = r.Reclaim()
		}
	}
	return f
}

// ErrNotOwned marks something a backend found under a machine's name that it did not make
// for that machine (a WSL distro or Hyper-V VM of the same name): it is left alone.
var ErrNotOwned = errors.New("not created by this machine; left in place")

// ErrNotSupported marks a capability a backend does not have yet.
var ErrNotSupported = errors.New("not supported on this backend yet")

// ErrNeedAdmin marks a step that needs administrator rights the user does not have; the
// backend's error says how to get them.
var ErrNeedAdmin = errors.New("administrator rights needed")

// CheckImage says which of the image's boot files is missing, so that a backend fails
// with the file's name before it touches its hypervisor.
func CheckImage(cfg Config) error {
	for _, f := range []string{cfg.Kernel, cfg.Initrd} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("guest image file missing: %w", err)
		}
	}
	return nil
}

// EFIBootDisk is the image file a firmware-booted guest starts from (Hyper-V Gen 2, and
// QEMU standing in for it): a raw GPT disk whose EFI System Partition holds a unified
// kernel image. Installed images keep it next to the kernel.
const EFIBootDisk = "efi-boot.img"

// ImageChecker is a backend that boots from more of the image than its kernel and
// initrd. `machine init` asks it before the machine is made, so that an image the backend
// cannot boot fails there, with nothing left behind.
type ImageChecker interface {
	// ImageRoles are the manifest roles of the image's optional files it boots from
	// (images.RoleEFIBoot, images.RoleWSLRootfs): `machine init` installs only those.
	ImageRoles() []string
	// CheckImageDir says, in one line that also says how to get it, what the installed
	// image in dir lacks.
	CheckImageDir(dir string) error
}

// CheckEFIBootDisk fails, naming the file and how to get it, when the EFI boot disk at
// path is missing: images built before it existed, or for another architecture.
func CheckEFIBootDisk(path string) error {
	return CheckImageFile(path, "the Hyper-V boot disk")
}

// CheckImageFile fails, naming the file (what it is) and how to get it, when the image file
// at path is missing.
func CheckImageFile(path, what string) error {
	_, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("guest image has no %s (%s; images built before it lack it): rebuild it with `make image`, or give --image an image that has it", filepath.Base(path), what)
	}
	if err != nil {
		return fmt.Errorf("guest image: %w", err)
	}
	return nil
}

// ShareTypeOf returns the share type a backend's guests use.
func ShareTypeOf(b Backend) string {
	if k, ok := b.(ShareKind); ok {
		return k.ShareType()
	}
	return "9p"
}
