// Package hyperv is the Windows backend on Hyper-V: a Generation 2 VM made with the
// Hyper-V PowerShell cmdlets from VHDXs converted from the image's raw disks. Hyper-V has
// no direct kernel boot, so the image supplies an EFI boot disk (efi-boot.img: a GPT disk
// whose ESP holds a unified kernel image built from the kernel, initrd and command line).
// The VM has no NIC: the guest reaches the embedded user-mode network and the host's
// services over hvsock.
package hyperv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/skiff-dev/skiff/images"
	"github.com/skiff-dev/skiff/vmm"
	"github.com/skiff-dev/skiff/vmm/winexec"
)

// Defaults for Options.
const (
	DefaultTransportPort uint32 = 1024
	DefaultNetworkPort   uint32 = 1025
	BootDiskName                = vmm.EFIBootDisk
	InstallCommand              = "skiff system install"
	markerFile                  = "hyperv-vm"
)

// Options tune the backend.
type Options struct {
	TransportPort uint32 // guest vsock port of the agent
	NetworkPort   uint32 // host vsock port the guest's network helper connects to
	// BootDisk returns the raw EFI boot disk; default BootDiskName next to the kernel.
	BootDisk func(cfg vmm.Config) string
	// PollInterval is how often Wait asks Hyper-V for the VM's state; default 2s.
	PollInterval time.Duration
}

// Hvsock opens hvsock connections to and from a VM by its ID.
type Hvsock interface {
	Dial(ctx context.Context, vmID string, port uint32) (net.Conn, error)
	Listen(vmID string, port uint32) (net.Listener, error)
	// OpenPipe opens a named pipe (the VM's COM1) for reading.
	OpenPipe(ctx context.Context, path string) (io.ReadCloser, error)
}

// Backend runs machines as Hyper-V VMs.
type Backend struct {
	Options  Options
	Run      winexec.Runner
	Registry winexec.Registry
	Hvsock   Hvsock
}

// New returns the backend driving the real OS.
func New(o Options) *Backend {
	return &Backend{Options: o, Run: winexec.Exec{}, Registry: winexec.WindowsRegistry{}, Hvsock: newHvsock()}
}

// Name implements vmm.Backend.
func (b *Backend) Name() string { return "hyperv" }

// ShareType implements vmm.ShareKind: Hyper-V has no file sharing device, so shares are
// the Go 9p server over the host<->guest transport.
func (b *Backend) ShareType() string { return "9p-transport" }

func (b *Backend) ports() (uint32, uint32) {
	t, n := b.Options.TransportPort, b.Options.NetworkPort
	if t == 0 {
		t = DefaultTransportPort
	}
	if n == 0 {
		n = DefaultNetworkPort
	}
	return t, n
}

// Services are the hvsock ports that need registry entries.
func (b *Backend) Services() []winexec.Service {
	t, n := b.ports()
	return []winexec.Service{{Port: t, Name: "Skiff transport"}, {Port: n, Name: "Skiff network"}}
}

// Install registers the hvsock services (HKLM, so administrator rights), once per host.
func (b *Backend) Install(ctx context.Context) error {
	return winexec.RegisterServices(ctx, b.Registry, b.Services(), InstallCommand)
}

// VMName is the Hyper-V VM of a machine.
func VMName(machine string) string { return "skiff-" + machine }

func (b *Backend) bootDisk(cfg vmm.Config) string {
	if b.Options.BootDisk != nil {
		return b.Options.BootDisk(cfg)
	}
	return filepath.Join(filepath.Dir(cfg.Kernel), BootDiskName)
}

// ImageRoles implements vmm.ImageChecker.
func (b *Backend) ImageRoles() []string { return []string{images.RoleEFIBoot} }

// CheckImageDir implements vmm.ImageChecker: the VM boots only from the image's EFI boot
// disk, so an image without one fails at init.
func (b *Backend) CheckImageDir(dir string) error {
	if b.Options.BootDisk != nil {
		return nil
	}
	return vmm.CheckEFIBootDisk(filepath.Join(dir, BootDiskName))
}

func vmDir(cfg vmm.Config) string { return filepath.Join(cfg.Dir, "hyperv") }

func comPipe(name string) string { return `\\.\pipe\` + name + "-com1" }

// Errors a caller may test for with errors.Is. Each message says what to do.
var (
	ErrHyperVMissing = errors.New("Hyper-V is not enabled: open PowerShell with \"Run as administrator\", run `Enable-WindowsOptionalFeature -Online -FeatureName Microsoft-Hyper-V -All` and restart Windows (Hyper-V needs Windows Pro, Enterprise or Education; on Home use --backend wsl2)")
	ErrNeedAdmin     = vmm.ErrNeedAdmin
	ErrVMExists      = errors.New("a Hyper-V VM with this machine's name already exists")
	errNoVM          = errors.New("no such VM")
)

// ps runs a PowerShell script and classifies failures.
func (b *Backend) ps(ctx context.Context, script string) (string, error) {
	out, err := winexec.PowerShell(ctx, b.Run, script)
	if err != nil {
		return "", classify(err, out)
	}
	return out, nil
}

func classify(err error, out string) error {
	lo := strings.ToLower(out)
	switch {
	case strings.Contains(lo, "is not recognized as the name of a cmdlet") || strings.Contains(lo, "hyper-v module") ||
		strings.Contains(lo, "could not access an expected wmi class") || strings.Contains(lo, "virtual machine management service"):
		return fmt.Errorf("hyperv: %w", ErrHyperVMissing)
	case strings.Contains(lo, "do not have the required permission") || strings.Contains(lo, "access is denied") ||
		strings.Contains(lo, "unauthorizedaccess"):
		return fmt.Errorf("hyperv: %w: no permission to manage Hyper-V VMs: add your user to the \"Hyper-V Administrators\" group (administrator PowerShell: `Add-LocalGroupMember -Group 'Hyper-V Administrators' -Member $env:USERNAME`, then sign out and back in), or run Skiff from a terminal opened with \"Run as administrator\"", ErrNeedAdmin)
	case strings.Contains(lo, "vmms.exe") && strings.Contains(lo, "does not exist"):
		// The Hyper-V management service is not installed (StateKey reads its version).
		return fmt.Errorf("hyperv: %w", ErrHyperVMissing)
	case strings.Contains(lo, "unable to find a virtual machine"):
		return fmt.Errorf("hyperv: %w: %s", errNoVM, firstLine(out))
	}
	return fmt.Errorf("hyperv: %w", err)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(l)
}

// Check implements vmm.Backend: the cmdlets exist and this user may use them.
func (b *Backend) Check(ctx context.Context) error {
	_, err := b.ps(ctx, "Get-VMHost | Out-Null")
	return err
}

// vmInfo returns the VM's ID and state (Off, Running, Saved...), or "" if there is no such VM.
func (b *Backend) vmInfo(ctx context.Context, name string) (id, state string, err error) {
	out, err := b.ps(ctx, fmt.Sprintf("$vm = Get-VM -Name %s -ErrorAction SilentlyContinue; if ($vm) { '{0} {1}' -f $vm.Id.Guid, $vm.State }", winexec.PSQuote(name)))
	if err != nil || out == "" {
		return "", "", err
	}
	id, state, ok := strings.Cut(out, " ")
	if !ok {
		return "", "", fmt.Errorf("hyperv: unexpected Get-VM output %q", out)
	}
	return id, state, nil
}

func owned(cfg vmm.Config, id string) bool {
	b, err := os.ReadFile(filepath.Join(cfg.Dir, markerFile))
	return err == nil && id != "" && strings.EqualFold(strings.TrimSpace(string(b)), id)
}

// Prepare implements vmm.Preparer: convert the disks and create the VM, once.
func (b *Backend) Prepare(ctx context.Context, cfg vmm.Config) error {
	if _, err := reclaimOf(cfg); err != nil {
		return err
	}
	name := VMName(cfg.Name)
	id, _, err := b.vmInfo(ctx, name)
	if err != nil {
		return err
	}
	if id != "" {
		if owned(cfg, id) {
			return nil
		}
		return fmt.Errorf("hyperv: %w: %s was not created by this Skiff machine; if it is a leftover, remove it in Hyper-V Manager or with `Remove-VM -Name %s`, otherwise choose another machine name", ErrVMExists, name, name)
	}
	dir := vmDir(cfg)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("hyperv: %w", err)
	}
	disks := b.disks(cfg)
	var vhdxs []string
	for _, d := range disks {
		vhd := filepath.Join(dir, d.Serial+".vhd")
		vhdx := vhdxPath(cfg, d)
		vhdxs = append(vhdxs, vhdx)
		if _, err := os.Stat(vhdx); err == nil {
			continue
		}
		if err := rawToVHD(d.Path, vhd); err != nil {
			return fmt.Errorf("hyperv: disk %s: %w", d.Serial, err)
		}
		_, err := b.ps(ctx, convertScript(vhd, vhdx))
		os.Remove(vhd)
		if err != nil {
			return fmt.Errorf("disk %s: %w", d.Serial, err)
		}
	}
	id, err = b.ps(ctx, createScript(name, dir, cfg, vhdxs))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(cfg.Dir, markerFile), []byte(id+"\n"), 0o600); err != nil {
		return fmt.Errorf("hyperv: %w", err)
	}
	return nil
}

// disks are the VM's disks in LUN order: the boot disk, then cfg.Disks.
func (b *Backend) disks(cfg vmm.Config) []vmm.Disk {
	return append([]vmm.Disk{{Path: b.bootDisk(cfg), Serial: "skiff-boot", ReadOnly: true}}, cfg.Disks...)
}

// DiskFiles implements vmm.Warm: the VM writes to its VHDXs, not the raw images.
func (b *Backend) DiskFiles(cfg vmm.Config) []string {
	var out []string
	for _, d := range cfg.Disks {
		out = append(out, vhdxPath(cfg, d))
	}
	return out
}

// vhdxPath is the VHDX the VM uses for a raw disk.
func vhdxPath(cfg vmm.Config, d vmm.Disk) string { return filepath.Join(vmDir(cfg), d.Serial+".vhdx") }

func convertScript(vhd, vhdx string) string {
	return fmt.Sprintf("Convert-VHD -Path %s -DestinationPath %s -VHDType Dynamic", winexec.PSQuote(vhd), winexec.PSQuote(vhdx))
}

// createScript makes the VM. Disks are SCSI LUNs in order (boot disk at LUN 0, then
// cfg.Disks): Hyper-V cannot set a disk serial, so the guest maps serials to LUNs.
func createScript(name, dir string, cfg vmm.Config, vhdxs []string) string {
	q := winexec.PSQuote(name)
	var s strings.Builder
	fmt.Fprintf(&s, "New-VM -Name %s -Generation 2 -MemoryStartupBytes %dMB -NoVHD -Path %s | Out-Null; ", q, cfg.MemoryMiB, winexec.PSQuote(dir))
	// Secure Boot would refuse the unsigned unified kernel image.
	fmt.Fprintf(&s, "Set-VMFirmware -VMName %s -EnableSecureBoot Off; ", q)
	fmt.Fprintf(&s, "Set-VMProcessor -VMName %s -Count %d; ", q, cfg.CPUs)
	s.WriteString(memoryScript(q, cfg))
	for i, p := range vhdxs {
		fmt.Fprintf(&s, "Add-VMHardDiskDrive -VMName %s -ControllerType SCSI -ControllerNumber 0 -ControllerLocation %d -Path %s; ", q, i, winexec.PSQuote(p))
	}
	fmt.Fprintf(&s, "Set-VMFirmware -VMName %s -FirstBootDevice (Get-VMHardDiskDrive -VMName %s -ControllerLocation 0); ", q, q)
	fmt.Fprintf(&s, "Set-VMComPort -VMName %s -Number 1 -Path %s; ", q, winexec.PSQuote(comPipe(name)))
	fmt.Fprintf(&s, "Set-VM -Name %s -AutomaticCheckpointsEnabled $false -AutomaticStartAction Nothing -AutomaticStopAction TurnOff; ", q)
	fmt.Fprintf(&s, "(Get-VM -Name %s).Id.Guid", q)
	return s.String()
}

// NetworkVsockPort implements vmm.VsockNetworker: the VM has no NIC.
func (b *Backend) NetworkVsockPort() uint32 {
	_, n := b.ports()
	return n
}

// Remove implements vmm.Remover.
func (b *Backend) Remove(ctx context.Context, cfg vmm.Config) error {
	name := VMName(cfg.Name)
	id, _, err := b.vmInfo(ctx, name)
	if err != nil {
		return err
	}
	if id != "" {
		if !owned(cfg, id) {
			return fmt.Errorf("hyperv: VM %s %w", name, vmm.ErrNotOwned)
		}
		q := winexec.PSQuote(name)
		if _, err := b.ps(ctx, fmt.Sprintf("Stop-VM -Name %s -TurnOff -Force -ErrorAction SilentlyContinue; Remove-VM -Name %s -Force", q, q)); err != nil {
			return err
		}
	}
	os.Remove(filepath.Join(cfg.Dir, markerFile))
	return os.RemoveAll(vmDir(cfg))
}

// state reads the VM's state: Off, Running, Starting, Stopping, Saved, Paused...
func (b *Backend) state(ctx context.Context, name string) (string, error) {
	return b.ps(ctx, fmt.Sprintf("(Get-VM -Name %s).State.ToString()", winexec.PSQuote(name)))
}

// Start implements vmm.Backend.
func (b *Backend) Start(ctx context.Context, cfg vmm.Config) (vmm.VM, error) {
	// The boot disk is built from these; a missing one means a broken image.
	if err := vmm.CheckImage(cfg); err != nil {
		return nil, fmt.Errorf("hyperv: %w", err)
	}
	if err := vmm.CheckEFIBootDisk(b.bootDisk(cfg)); err != nil {
		return nil, fmt.Errorf("hyperv: %w", err)
	}
	if err := b.Prepare(ctx, cfg); err != nil {
		return nil, err
	}
	return b.launch(ctx, cfg)
}

// launch runs the prepared VM: Start-VM boots it, or resumes it when it is Saved.
func (b *Backend) launch(ctx context.Context, cfg vmm.Config) (*machine, error) {
	if err := winexec.RequireServices(b.Registry, b.Services(), InstallCommand); err != nil {
		return nil, fmt.Errorf("hyperv: %w", err)
	}
	idb, err := os.ReadFile(filepath.Join(cfg.Dir, markerFile))
	if err != nil {
		return nil, fmt.Errorf("hyperv: %w", err)
	}
	name := VMName(cfg.Name)
	reclaim, err := reclaimOf(cfg)
	if err != nil {
		return nil, err
	}
	m := &machine{b: b, name: name, id: strings.TrimSpace(string(idb)), reclaim: reclaim}
	transport, netPort := b.ports()
	m.transportPort = transport
	l, err := b.Hvsock.Listen(m.id, netPort)
	if err != nil {
		return nil, fmt.Errorf("hyperv: listen for the guest network on hvsock port %d: %w", netPort, err)
	}
	m.netListener = l
	go vmm.ServeGuestStreams(l, cfg.Network)
	if _, err := b.ps(ctx, "Start-VM -Name "+winexec.PSQuote(name)); err != nil {
		l.Close()
		return nil, err
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.serialDone = make(chan struct{})
	go m.copySerial(comPipe(name), cfg.SerialLog)
	go m.poll()
	return m, nil
}

type machine struct {
	b             *Backend
	name, id      string
	transportPort uint32
	netListener   net.Listener
	ctx           context.Context
	cancel        context.CancelFunc

	exit       vmm.Exit
	serialDone chan struct{} // closed when COM1 is drained into the serial log
	reclaim    string        // vmm.ReclaimDynamicMemory or vmm.ReclaimOff
}

// copySerial keeps COM1 (a named pipe Hyper-V serves while the VM runs) in the serial log.
func (m *machine) copySerial(pipe, logPath string) {
	defer close(m.serialDone)
	r, err := m.b.Hvsock.OpenPipe(m.ctx, pipe)
	if err != nil {
		return
	}
	defer r.Close()
	stop := context.AfterFunc(m.ctx, func() { r.Close() })
	defer stop()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	io.Copy(f, r)
}

// poll turns Hyper-V's state into Wait's result: there is no process to wait for.
func (m *machine) poll() {
	interval := m.b.Options.PollInterval
	if interval == 0 {
		interval = 2 * time.Second
	}
	failures := 0
	for {
		st, err := m.b.state(m.ctx, m.name)
		switch {
		case m.ctx.Err() != nil:
			return
		case errors.Is(err, errNoVM):
			m.finish(fmt.Errorf("hyperv: VM %s was deleted while running", m.name))
			return
		case err != nil:
			if failures++; failures >= 3 {
				m.finish(fmt.Errorf("hyperv: lost track of VM %s: %w", m.name, err))
				return
			}
		case st == "Off" || st == "Saved":
			// Saved: Suspend, or someone else, saved the VM; it no longer runs either way.
			m.finish(nil)
			return
		default:
			failures = 0
		}
		select {
		case <-time.After(interval):
		case <-m.ctx.Done():
			return
		}
	}
}

func (m *machine) finish(err error) {
	m.exit.FinishWith(func() error {
		// The pipe closes when the VM is off; give the last lines (a panic) time to land.
		select {
		case <-m.serialDone:
		case <-time.After(2 * time.Second):
		}
		m.netListener.Close()
		m.cancel()
		return err
	})
}

// Wait implements vmm.VM.
func (m *machine) Wait(ctx context.Context) error { return m.exit.Wait(ctx) }

// Kill implements vmm.VM: turn the VM off without asking the guest.
func (m *machine) Kill(ctx context.Context) error {
	if m.exit.Exited() {
		return nil
	}
	if _, err := m.b.ps(ctx, fmt.Sprintf("Stop-VM -Name %s -TurnOff -Force", winexec.PSQuote(m.name))); err != nil {
		return err
	}
	m.finish(nil)
	return nil
}

// RequestStop asks the guest to shut down through the Hyper-V shutdown integration service.
func (m *machine) RequestStop(ctx context.Context) error {
	_, err := m.b.ps(ctx, fmt.Sprintf("Stop-VM -Name %s -Force -AsJob | Out-Null", winexec.PSQuote(m.name)))
	return err
}

// DialGuest implements vmm.GuestDialer over hvsock.
func (m *machine) DialGuest(ctx context.Context, port uint32) (net.Conn, error) {
	c, err := m.b.Hvsock.Dial(ctx, m.id, port)
	if err != nil {
		return nil, fmt.Errorf("hyperv: hvsock port %d of %s: %w", port, m.name, err)
	}
	return c, nil
}

// Describe implements vmm.Describer.
func (m *machine) Describe() map[string]string {
	return map[string]string{"hypervisor": "Hyper-V", "vmId": m.id}
}

// Reclaim implements vmm.Reclaimer.
func (m *machine) Reclaim() string { return m.reclaim }

// reclaimOf is how a Hyper-V VM returns memory: Hyper-V's dynamic memory, which balances
// it with the guest's hv_balloon by itself, unless turned off.
func reclaimOf(cfg vmm.Config) (string, error) {
	return vmm.ReclaimOf("hyperv", cfg, vmm.ReclaimDynamicMemory, vmm.ReclaimOff)
}

// dynamicMinMiB is the least dynamic memory leaves a guest: enough for the kernel, the
// engine and an idle container, so that a quiet machine costs the host this much.
const dynamicMinMiB = 512

// memoryScript sets the VM's memory: with dynamic memory, Hyper-V gives the guest what it
// asks for between a floor and the machine's size, starting at the full size so the boot
// never waits on hot-add; without it, a fixed size.
func memoryScript(q string, cfg vmm.Config) string {
	if r, _ := reclaimOf(cfg); r == vmm.ReclaimDynamicMemory {
		return fmt.Sprintf("Set-VMMemory -VMName %s -DynamicMemoryEnabled $true -MinimumBytes %dMB -StartupBytes %dMB -MaximumBytes %dMB -Buffer 20; ",
			q, min(dynamicMinMiB, cfg.MemoryMiB), cfg.MemoryMiB, cfg.MemoryMiB)
	}
	return fmt.Sprintf("Set-VMMemory -VMName %s -DynamicMemoryEnabled $false -StartupBytes %dMB; ", q, cfg.MemoryMiB)
}

var (
	_ vmm.Backend        = (*Backend)(nil)
	_ vmm.Preparer       = (*Backend)(nil)
	_ vmm.Remover        = (*Backend)(nil)
	_ vmm.VsockNetworker = (*Backend)(nil)
	_ vmm.ShareKind      = (*Backend)(nil)
	_ vmm.GuestDialer    = (*machine)(nil)
	_ vmm.Describer      = (*machine)(nil)
	_ vmm.Reclaimer      = (*machine)(nil)
)
