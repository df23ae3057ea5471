// Package qemu is the QEMU backend: Linux (KVM or TCG), and also macOS (HVF) and Windows
// (WHPX). The VM is a child process of the host agent; its NIC is a -netdev stream socket
// served by the agent's embedded user-mode network.
package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/skiff-dev/skiff/vmm"
)

// Backend runs VMs with qemu-system-*.
type Backend struct {
	// Binary overrides the qemu-system binary (default: by guest arch on PATH).
	Binary string
	// Accel forces an accelerator (kvm, hvf, whpx, tcg). Empty probes for the best one.
	Accel string
	// Virtiofsd overrides the virtiofsd binary for virtiofs shares (default: PATH, then
	// where distributions install it).
	Virtiofsd string
	// Vsock says whether the VM gets a vsock device (vsock.go); by default it does where
	// the host has vhost-vsock, and the host then reaches the guest agent over it.
	Vsock VsockMode
	// VZDevices gives the guest vz's devices where QEMU has them (nic.go): a virtio console
	// (hvc0) and a NIC that carries one frame per datagram, so that what vz boots and its
	// datagram network run on Linux too.
	VZDevices bool
	// Boot is how the guest starts: BootDirect (the zero value) or BootHyperV (uefi.go).
	Boot BootMode
	// HyperV tunes BootHyperV.
	HyperV HyperVBoot
}

// Name implements vmm.Backend.
func (b *Backend) Name() string { return "qemu" }

// ShareType implements vmm.ShareKind: Skiff's own 9p server over the transport, as on
// Hyper-V. QEMU's virtio-9p gives files a qid version, so the guest caches their pages:
// a file a guest process holds open while the host appends to it, rewrites it or saves
// over it then reads as NUL bytes, by name and through the descriptor. Skiff's server
// gives none, so the guest reads from the host every time. --share-type 9p still picks
// virtio-9p; virtiofs shares are served by virtiofsd (virtiofs.go).
func (b *Backend) ShareType() string { return "9p-transport" }

func (b *Backend) binary(arch string) string {
	if b.Binary != "" {
		return b.Binary
	}
	if arch == "arm64" {
		return "qemu-system-aarch64"
	}
	return "qemu-system-x86_64"
}

// Check implements vmm.Backend.
func (b *Backend) Check(ctx context.Context) error {
	bin := b.binary(hostArch())
	if _, err := exec.LookPath(bin); err != nil {
		return fmt.Errorf("%s not found: install QEMU (Debian/Ubuntu: apt-get install qemu-system-x86; macOS: brew install qemu)", bin)
	}
	return nil
}

func hostArch() string { return runtime.GOARCH }

// ChooseAccel picks the accelerator for a boot: the forced one, else a working native
// one, else TCG. The native one is probed for real (on some hosts /dev/kvm opens but
// guests hang), and a boot waits for a first probe only briefly (bootProbeWait).
func (b *Backend) ChooseAccel(arch, kernel string) (string, string) {
	v := b.ProbeAccel(arch, kernel, ProbeOptions{Wait: bootProbeWait})
	return v.Accel, v.Reason
}

// ProbeOptions say how long a caller waits for a probe when no verdict is kept.
type ProbeOptions struct {
	// Wait bounds the wait; past it the answer is TCG, Pending. Zero waits for the end.
	Wait time.Duration
}

// Verdict is what the accelerator probe found.
type Verdict struct {
	Accel  string    `json:"accel"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at,omitzero"` // when the probe ran
	// Kept: the verdict was kept from an earlier probe on this same host, not probed now.
	Kept bool `json:"-"`
	// Pending: the probe had not ended within the wait; Accel is the fallback.
	Pending bool `json:"-"`
}

// ProbeAccel is ChooseAccel's decision with how it was reached, for `skiff doctor`.
func (b *Backend) ProbeAccel(arch, kernel string, o ProbeOptions) Verdict {
	if b.Accel != "" {
		return Verdict{Accel: b.Accel, Reason: "forced by configuration"}
	}
	if arch != hostArch() {
		return Verdict{Accel: "tcg", Reason: "guest architecture differs from the host"}
	}
	return probeNative(b.binary(arch), kernel, o)
}

// Args builds the QEMU command line for cfg. It is pure so that tests can check it.
func (b *Backend) Args(cfg vmm.Config, accel, netSock, qmpSock, pidFile string) []string {
	a := []string{
		"-name", "skiff-" + cfg.Name,
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-smp", strconv.Itoa(cfg.CPUs),
		"-m", strconv.FormatInt(cfg.MemoryMiB, 10) + "M",
	}
	if b.Boot == BootHyperV {
		a = append(a, b.hypervBootArgs(cfg)...)
	} else {
		a = append(a, "-kernel", kernelFor(cfg), "-initrd", cfg.Initrd, "-append", b.cmdline(cfg, accel))
		if bios := qboot(cfg.Arch); bios != "" {
			// qboot jumps straight to the kernel; SeaBIOS spends seconds under TCG.
			a = append(a, "-bios", bios)
		}
	}
	machine := "q35,vmport=off,smbus=off,sata=off"
	if cfg.Arch == "arm64" {
		machine = "virt,gic-version=max"
	}
	if sharedRAM {
		a = append(a, "-object", fmt.Sprintf("memory-backend-file,id=ram0,mem-path=%s,share=on,size=%dM", ramPath, cfg.MemoryMiB))
		machine += ",memory-backend=ram0"
	}
	a = append(a, "-machine", machine, "-cpu", cpuFor(accel, cfg.Arch))
	if accel == "tcg" {
		a = append(a, "-accel", "tcg,thread=multi,tb-size=512")
	} else {
		a = append(a, "-accel", accel)
	}
	if b.Boot == BootHyperV {
		a = append(a, b.hypervDiskArgs(cfg)...)
	} else {
		for i, d := range cfg.Disks {
			a = append(a, "-drive", driveArg(i, d, "raw"),
				"-device", fmt.Sprintf("virtio-blk-pci,drive=disk%d,serial=%s", i, d.Serial))
		}
	}
	a = append(a,
		"-netdev", b.netdevArg(netSock),
		"-device", "virtio-net-pci,netdev=net0,mac="+cfg.MAC+",mrg_rxbuf=on,romfile=",
		"-device", "virtio-rng-pci",
		"-device", balloonArg(cfg),
	)
	a = append(a, groupArgs(cfg)...)
	for i, s := range cfg.Shares {
		if s.Type == shareVirtiofs {
			a = append(a, virtiofsArgs(cfg, i)...)
			continue
		}
		fs := fmt.Sprintf("local,id=fs%d,path=%s,security_model=none,multidevs=remap", i, qemuEscape(s.HostPath))
		if s.ReadOnly {
			fs += ",readonly=on"
		}
		a = append(a, "-fsdev", fs, "-device", fmt.Sprintf("virtio-9p-pci,fsdev=fs%d,mount_tag=%s", i, s.Tag))
	}
	a = append(a, b.consoleArgs(cfg)...)
	a = append(a,
		"-qmp", "unix:"+qmpSock+",server=on,wait=off",
		"-pidfile", pidFile,
	)
	a = append(a, extraArgs()...)
	return a
}

// driveArg is the -drive of disk i, attached by the device that names drive "disk<i>".
func driveArg(i int, d vmm.Disk, format string) string {
	drive := fmt.Sprintf("if=none,id=disk%d,file=%s,format=%s,cache=writeback,aio=threads", i, qemuEscape(d.Path), format)
	if d.ReadOnly {
		drive += ",readonly=on"
	}
	if d.Discard {
		drive += ",discard=unmap,detect-zeroes=unmap"
	}
	return drive
}

// qbootPaths are where distributions install QEMU's minimal x86 firmware.
var qbootPaths = []string{"/usr/share/qemu/qboot.rom", "/usr/local/share/qemu/qboot.rom", "/opt/homebrew/share/qemu/qboot.rom"}

func qboot(arch string) string {
	if arch == "arm64" {
		return ""
	}
	for _, p := range qbootPaths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// kernelFor prefers the uncompressed PVH kernel on x86: QEMU jumps straight into it.
func kernelFor(cfg vmm.Config) string {
	if cfg.KernelELF != "" && cfg.Arch != "arm64" {
		if _, err := os.Stat(cfg.KernelELF); err == nil {
			return cfg.KernelELF
		}
	}
	return cfg.Kernel
}

// cpuFor is the guest's CPU model: the host's, or under emulation everything TCG can
// emulate ("max") but for features that make the emulator slow and that a guest only
// uses for speed.
func cpuFor(accel, arch string) string {
	if accel != "tcg" {
		return "host"
	}
	if arch == "arm64" {
		// Emulated QARMA pointer authentication makes an arm64 boot ~4x slower under
		// TCG; the implementation-defined algorithm is as good for a guest that cannot tell.
		return "max,pauth-impdef=on"
	}
	// With ERMS or FSRM the kernel, libc and Go copy memory with `rep movsb`, which TCG
	// runs one byte per iteration; without them `rep movsq` or vector loops move 8 to
	// 32 bytes an iteration. Reading a 256 MB tmpfs file in the guest took 0.37-0.63 s
	// against 1.71-1.89 s with ERMS.
	return "max,-erms,-fsrm"
}

// tcgKernelArgs are added to the guest's command line under emulation. The kernel zeroes
// every page it allocates (Debian's default hardening, init_on_alloc): cheap on hardware,
// but under TCG it was ~2 s of a ~11 s boot (medians of 5 interleaved boots, 11.0 s vs
// 9.0 s to engine-ready). What it guards against is a kernel bug leaking old memory to a
// process of the same VM, whose every process belongs to the one user anyway; under KVM,
// where it costs little, the guest keeps it.
const tcgKernelArgs = "init_on_alloc=0"

func cmdlineFor(cmdline, accel string) string {
	if accel != "tcg" {
		return cmdline
	}
	return strings.TrimSpace(cmdline + " " + tcgKernelArgs)
}

// qemuEscape doubles commas, QEMU's option separator.
func qemuEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// Start implements vmm.Backend.
func (b *Backend) Start(ctx context.Context, cfg vmm.Config) (vmm.VM, error) {
	vm, err := b.launch(ctx, cfg, launchOptions{})
	if err != nil {
		return nil, err
	}
	return vm.handle(), nil
}

// launchOptions say how a VM begins when it is not a plain boot.
type launchOptions struct {
	// ram is the guest memory to map (shared-RAM hosts); nil makes a fresh one.
	ram *os.File
	// incoming is a saved device (or whole-VM) stream to load instead of booting.
	incoming *os.File
}

// launch starts QEMU. With an incoming stream QEMU waits (-incoming defer) for the
// caller to set migration capabilities and start loading.
func (b *Backend) launch(ctx context.Context, cfg vmm.Config, opt launchOptions) (*VM, error) {
	if err := vmm.CheckImage(cfg); err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	if err := checkShares(cfg); err != nil {
		return nil, err
	}
	if err := b.prepareBoot(cfg); err != nil {
		return nil, err
	}
	for _, d := range cfg.Disks {
		if _, err := os.Stat(d.Path); err != nil {
			return nil, fmt.Errorf("qemu: disk %s: %w", d.Serial, err)
		}
	}
	reclaim, err := reclaimOf(cfg)
	if err != nil {
		return nil, err
	}
	accel, why := b.ChooseAccel(cfg.Arch, cfg.Kernel)
	netSock, qmpSock, pidFile := paths(cfg)
	os.Remove(qmpSock)
	ln, err := b.openNIC(cfg, netSock)
	if err != nil {
		return nil, err
	}
	// virtiofsd first: QEMU connects to its socket as it starts.
	fsd, err := b.startVirtiofs(ctx, cfg)
	if err != nil {
		ln.Close()
		return nil, err
	}
	launched := false
	defer func() {
		if !launched {
			fsd.stop()
		}
	}()

	vm := &VM{fs: fsd, accel: accel, accelWhy: why, qmp: qmpSock, memMiB: cfg.MemoryMiB, reclaim: reclaim}
	cmd := exec.Command(b.binary(cfg.Arch), b.Args(cfg, accel, netSock, qmpSock, pidFile)...)
	if sharedRAM {
		vm.ram = opt.ram
		if vm.ram == nil {
			if vm.ram, err = newRAM(cfg.MemoryMiB); err != nil {
				ln.Close()
				return nil, err
			}
		}
		cmd.ExtraFiles = []*os.File{vm.ram} // fd 3, ramPath
	}
	if ln.guest != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, ln.guest) // dgramFD
	}
	if b.vsockUsable() {
		vm.cid = newCID()
		cmd.Args = append(cmd.Args, vsockArgs(vm.cid)...)
	}
	if opt.incoming != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, opt.incoming)
		vm.incomingFD = 2 + len(cmd.ExtraFiles)
		cmd.Args = append(cmd.Args, "-incoming", "defer")
	}
	logf, err := os.OpenFile(filepath.Join(cfg.Dir, "qemu.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		ln.Close()
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := startChild(cmd); err != nil {
		ln.Close()
		logf.Close()
		return nil, fmt.Errorf("qemu: start %s: %w", cmd.Path, err)
	}
	vm.cmd = cmd
	vm.Proc = vmm.WatchProcess(vmm.CmdProcess(cmd), func(err error) error {
		logf.Close()
		ln.Close()
		if vm.ram != nil && !vm.suspending.Load() {
			vm.ram.Close()
		}
		if err != nil {
			tail, _ := os.ReadFile(filepath.Join(cfg.Dir, "qemu.log"))
			err = fmt.Errorf("qemu exited: %w: %s", err, lastLines(string(tail), 5))
			if ferr := fsd.exited(); ferr != nil {
				err = fmt.Errorf("%w (%v)", ferr, err)
			}
		}
		fsd.stop()
		return err
	})

	// QEMU creates its QMP socket with the umask; it is ours alone.
	go func() {
		for i := 0; i < 100; i++ {
			if os.Chmod(qmpSock, 0o600) == nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	if err := ln.attach(cfg, vm.Done()); err != nil {
		if errors.Is(err, errExited) {
			return nil, vm.Err()
		}
		vm.Kill(ctx)
		return nil, err
	}
	launched = true
	return vm, nil
}

// paths are the VM's sockets and pid file.
func paths(cfg vmm.Config) (netSock, qmpSock, pidFile string) {
	return filepath.Join(cfg.RunDir, "net.sock"), filepath.Join(cfg.RunDir, "qmp.sock"), filepath.Join(cfg.Dir, "vm.pid")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// VM is a running QEMU process. Its Wait and Kill are the process's (vmm.Proc).
type VM struct {
	*vmm.Proc
	cmd      *exec.Cmd
	accel    string
	accelWhy string
	qmp      string
	memMiB   int64
	// ram is the guest memory on shared-RAM hosts; the agent keeps it past QEMU's exit.
	ram *os.File
	// incomingFD is the saved stream's descriptor number in QEMU when restoring.
	incomingFD int
	// suspending keeps ram open after QEMU exits, for Suspend to write it out.
	suspending atomic.Bool
	// fs are the virtiofsd processes of the VM's virtiofs shares.
	fs fsDaemons
	// cid is the guest's vsock context ID; 0 without a vsock device.
	cid uint32
	// reclaim is how the guest's unused memory goes back (vmm.Reclaim*).
	reclaim string
}

// canSuspend is Backend.CanSuspend for one of its VMs.
func (v *VM) canSuspend() error {
	if runtime.GOOS == "windows" {
		return fmt.Errorf("qemu: suspend on Windows: %w", vmm.ErrNotSupported)
	}
	if len(v.fs) > 0 {
		return errVirtiofsSuspend
	}
	return nil
}

// PID implements vmm.ProcessVM.
func (v *VM) PID() int { return v.cmd.Process.Pid }

// Describe implements vmm.Describer.
func (v *VM) Describe() map[string]string {
	return map[string]string{"accel": v.accel, "accelReason": v.accelWhy}
}
