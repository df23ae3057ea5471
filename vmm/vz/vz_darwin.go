package vz

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"github.com/Code-Hex/vz/v3"
	"golang.org/x/sys/unix"

	"github.com/skiff-dev/skiff/forward/transport"
	"github.com/skiff-dev/skiff/vmm"
)

// Check implements vmm.Backend. vz itself needs macOS 11; virtiofs and forced stop, which
// Skiff relies on, need macOS 12, and block device serials 12.3.
func (b *Backend) Check(ctx context.Context) error {
	if vz.VirtualMachineConfigurationMaximumAllowedCPUCount() == 0 {
		return errors.New("vz: Virtualization.framework reports no usable CPUs; this Mac cannot run VMs (is Skiff running inside a VM without nested virtualization?)")
	}
	if _, err := vz.NewVirtioSocketDeviceConfiguration(); err != nil {
		return fmt.Errorf("vz: Virtualization.framework unavailable: %w; Skiff needs macOS 12.3 or newer", err)
	}
	if _, err := vz.NewVirtioFileSystemDeviceConfiguration("probe"); err != nil {
		return fmt.Errorf("vz: virtiofs unavailable: %w; update to macOS 12.3 or newer, or use --backend qemu", err)
	}
	return nil
}

func hostLimits() limits {
	return limits{
		MinCPUs:   vz.VirtualMachineConfigurationMinimumAllowedCPUCount(),
		MaxCPUs:   vz.VirtualMachineConfigurationMaximumAllowedCPUCount(),
		MinMemory: vz.VirtualMachineConfigurationMinimumAllowedMemorySize(),
		MaxMemory: vz.VirtualMachineConfigurationMaximumAllowedMemorySize(),
	}
}

// Start implements vmm.Backend. The VM lives in this process; Kill or the agent's exit ends it.
func (b *Backend) Start(ctx context.Context, cfg vmm.Config) (vmm.VM, error) {
	m, err := b.newMachine(cfg)
	if err != nil {
		return nil, err
	}
	if err := m.vm.Start(); err != nil {
		m.abandon()
		return nil, fmt.Errorf("vz: start: %w", err)
	}
	return m, nil
}

// hostShape is the VM Start builds for cfg on this Mac, and the Rosetta note for Describe.
func (b *Backend) hostShape(cfg vmm.Config) (vmShape, string) {
	ok, note := false, ""
	if b.Options.Rosetta == RosettaAuto && cfg.Arch == "arm64" {
		ok, note = rosettaStatus()
	}
	return b.shape(cfg, ok), note
}

// newMachine creates the VM, not yet started, with its network served and its state
// watched. Start boots it; Restore loads a saved state into it, which needs the very
// configuration the state was saved from, so both build it here.
func (b *Backend) newMachine(cfg vmm.Config) (*machine, error) {
	if err := vmm.CheckImage(cfg); err != nil {
		return nil, fmt.Errorf("vz: %w", err)
	}
	s, rosettaNote := b.hostShape(cfg)
	if err := checkResources(s.CPUs, s.MemoryMiB, hostLimits()); err != nil {
		return nil, err
	}
	reclaim, err := reclaimOf(cfg)
	if err != nil {
		return nil, err
	}
	mac, err := parseMAC(s.MAC)
	if err != nil {
		return nil, err
	}
	boot, err := vz.NewLinuxBootLoader(s.Kernel, vz.WithInitrd(s.Initrd), vz.WithCommandLine(s.Cmdline))
	if err != nil {
		return nil, fmt.Errorf("vz: boot loader for %s: %w", s.Kernel, err)
	}
	vcfg, err := vz.NewVirtualMachineConfiguration(boot, uint(s.CPUs), uint64(s.MemoryMiB)<<20)
	if err != nil {
		return nil, fmt.Errorf("vz: %w", err)
	}
	m := &machine{describe: map[string]string{"hypervisor": "Apple Virtualization.framework"}, reclaim: reclaim}
	if rosettaNote != "" {
		m.describe["rosetta"] = rosettaNote
	}
	ok := false
	defer func() {
		if !ok {
			m.closeFiles()
		}
	}()

	if err := m.addDisks(vcfg, s.Disks); err != nil {
		return nil, err
	}
	netCfg, err := m.network(mac, s.MTU)
	if err != nil {
		return nil, err
	}
	vcfg.SetNetworkDevicesVirtualMachineConfiguration([]*vz.VirtioNetworkDeviceConfiguration{netCfg})

	// The fixed devices (vmShape.Devices): console, vsock, entropy, balloon.
	serial, err := vz.NewFileSerialPortAttachment(cfg.SerialLog, true)
	if err != nil {
		return nil, fmt.Errorf("vz: serial log %s: %w", cfg.SerialLog, err)
	}
	console, err := vz.NewVirtioConsoleDeviceSerialPortConfiguration(serial)
	if err != nil {
		return nil, fmt.Errorf("vz: serial console: %w", err)
	}
	vcfg.SetSerialPortsVirtualMachineConfiguration([]*vz.VirtioConsoleDeviceSerialPortConfiguration{console})

	sock, err := vz.NewVirtioSocketDeviceConfiguration()
	if err != nil {
		return nil, fmt.Errorf("vz: socket device: %w", err)
	}
	vcfg.SetSocketDevicesVirtualMachineConfiguration([]vz.SocketDeviceConfiguration{sock})

	entropy, err := vz.NewVirtioEntropyDeviceConfiguration()
	if err != nil {
		return nil, fmt.Errorf("vz: entropy device: %w", err)
	}
	vcfg.SetEntropyDevicesVirtualMachineConfiguration([]*vz.VirtioEntropyDeviceConfiguration{entropy})
	balloon, err := vz.NewVirtioTraditionalMemoryBalloonDeviceConfiguration()
	if err != nil {
		return nil, fmt.Errorf("vz: balloon device: %w", err)
	}
	vcfg.SetMemoryBalloonDevicesVirtualMachineConfiguration([]vz.MemoryBalloonDeviceConfiguration{balloon})

	shares, err := directoryShares(s.Shares)
	if err != nil {
		return nil, err
	}
	if s.Rosetta {
		rs, err := rosettaShare()
		if err != nil {
			return nil, err
		}
		shares = append(shares, rs)
	}
	vcfg.SetDirectorySharingDevicesVirtualMachineConfiguration(shares)

	if _, err := vcfg.Validate(); err != nil {
		return nil, fmt.Errorf("vz: configuration rejected: %w", err)
	}
	vm, err := vz.NewVirtualMachine(vcfg)
	if err != nil {
		return nil, fmt.Errorf("vz: %w", err)
	}
	m.vm = vm

	netCtx, cancel := context.WithCancel(context.Background())
	m.stopNet = cancel
	go func() {
		// The network outlives the caller's ctx: it must serve for the VM's whole life.
		if err := cfg.Network.ServeDatagram(netCtx, m.hostConn); err != nil && netCtx.Err() == nil {
			m.setNetErr(err)
		}
	}()
	go m.watch()
	ok = true
	return m, nil
}

func (m *machine) addDisks(vcfg *vz.VirtualMachineConfiguration, disks []vmm.Disk) error {
	var devs []vz.StorageDeviceConfiguration
	for _, d := range disks {
		if _, err := os.Stat(d.Path); err != nil {
			return fmt.Errorf("vz: disk %s: %w", d.Serial, err)
		}
		att, err := vz.NewDiskImageStorageDeviceAttachment(d.Path, d.ReadOnly)
		if err != nil {
			return fmt.Errorf("vz: disk %s (%s): %w", d.Serial, d.Path, err)
		}
		blk, err := vz.NewVirtioBlockDeviceConfiguration(att)
		if err != nil {
			return fmt.Errorf("vz: disk %s: %w", d.Serial, err)
		}
		if d.Serial != "" {
			// The guest finds disks by serial; without it root and data disks could swap.
			if err := blk.SetBlockDeviceIdentifier(d.Serial); err != nil {
				return fmt.Errorf("vz: disk serial %q: %w (block device serials need macOS 12.3 or newer)", d.Serial, err)
			}
		}
		devs = append(devs, blk)
	}
	vcfg.SetStorageDevicesVirtualMachineConfiguration(devs)
	return nil
}

// network makes the NIC the way vfkit does: one end of a unixgram socketpair goes to vz as
// a file handle, one Ethernet frame per datagram; the other end is served by the
// user-mode network.
func (m *machine) network(mac net.HardwareAddr, mtu int) (*vz.VirtioNetworkDeviceConfiguration, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		return nil, fmt.Errorf("vz: network socketpair: %w", err)
	}
	for _, fd := range fds {
		// Buffers far above one frame, as vfkit sets them, so bursts are not dropped.
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}
	m.vmFile = os.NewFile(uintptr(fds[0]), "vz-net-vm")
	hostFile := os.NewFile(uintptr(fds[1]), "vz-net-host")
	conn, err := net.FileConn(hostFile)
	hostFile.Close() // FileConn dups the descriptor
	if err != nil {
		return nil, fmt.Errorf("vz: network socket: %w", err)
	}
	m.hostConn = conn
	att, err := vz.NewFileHandleNetworkDeviceAttachment(m.vmFile)
	if err != nil {
		return nil, fmt.Errorf("vz: network attachment: %w", err)
	}
	if mtu != 1500 {
		if err := att.SetMaximumTransmissionUnit(mtu); err != nil {
			return nil, fmt.Errorf("vz: NIC MTU %d: %w (MTUs above 1500 need macOS 13)", mtu, err)
		}
	}
	nic, err := vz.NewVirtioNetworkDeviceConfiguration(att)
	if err != nil {
		return nil, fmt.Errorf("vz: network device: %w", err)
	}
	vmac, err := vz.NewMACAddress(mac)
	if err != nil {
		return nil, fmt.Errorf("vz: MAC address: %w", err)
	}
	nic.SetMACAddress(vmac)
	return nic, nil
}

func directoryShares(shares []vmm.Share) ([]vz.DirectorySharingDeviceConfiguration, error) {
	var out []vz.DirectorySharingDeviceConfiguration
	for _, s := range shares {
		dir, err := vz.NewSharedDirectory(s.HostPath, s.ReadOnly)
		if err != nil {
			return nil, fmt.Errorf("vz: share %s: %w", s.HostPath, err)
		}
		single, err := vz.NewSingleDirectoryShare(dir)
		if err != nil {
			return nil, fmt.Errorf("vz: share %s: %w", s.HostPath, err)
		}
		fs, err := vz.NewVirtioFileSystemDeviceConfiguration(s.Tag)
		if err != nil {
			return nil, fmt.Errorf("vz: share tag %q: %w", s.Tag, err)
		}
		fs.SetDirectoryShare(single)
		out = append(out, fs)
	}
	return out, nil
}

// machine is one running vz VM.
type machine struct {
	vm       *vz.VirtualMachine
	vmFile   *os.File // vz's end of the NIC socketpair
	hostConn net.Conn // our end, served by the user-mode network
	stopNet  context.CancelFunc
	describe map[string]string

	exit   vmm.Exit // ends once the VM reached a final state
	mu     sync.Mutex
	netErr error
	// reclaim is vmm.ReclaimBalloon, or vmm.ReclaimOff to leave the balloon alone.
	reclaim string
}

// watch turns vz's state-change notifications into Wait's result.
func (m *machine) watch() {
	for st := range m.vm.StateChangedNotify() {
		switch st {
		case vz.VirtualMachineStateStopped:
			m.finish(nil)
			return
		case vz.VirtualMachineStateError:
			m.finish(errors.New("vz: the virtual machine stopped with an error (see the serial log)"))
			return
		}
	}
}

func (m *machine) finish(err error) {
	m.exit.FinishWith(func() error {
		m.mu.Lock()
		netErr := m.netErr
		m.mu.Unlock()
		if err == nil && netErr != nil {
			err = fmt.Errorf("vz: network: %w", netErr)
		}
		if m.stopNet != nil {
			m.stopNet()
		}
		m.closeFiles()
		return err
	})
}

// abandon ends a VM that did not come up, whatever state vz left it in, and frees its
// network: nobody will Wait for it.
func (m *machine) abandon() {
	m.Kill(context.Background())
	m.finish(errors.New("vz: the VM did not come up"))
}

func (m *machine) setNetErr(err error) {
	m.mu.Lock()
	m.netErr = err
	m.mu.Unlock()
}

func (m *machine) closeFiles() {
	if m.hostConn != nil {
		m.hostConn.Close()
	}
	if m.vmFile != nil {
		m.vmFile.Close()
	}
}

// Wait implements vmm.VM.
func (m *machine) Wait(ctx context.Context) error { return m.exit.Wait(ctx) }

// Kill implements vmm.VM: a forced stop, like pulling the power cord.
func (m *machine) Kill(ctx context.Context) error {
	if m.exit.Exited() {
		return nil
	}
	if m.vm.CanStop() {
		if err := m.vm.Stop(); err != nil && m.vm.State() != vz.VirtualMachineStateStopped {
			return fmt.Errorf("vz: stop: %w", err)
		}
	}
	// A VM that never ran reports no state change; finish here so Wait returns.
	if st := m.vm.State(); st == vz.VirtualMachineStateStopped || st == vz.VirtualMachineStateError {
		m.finish(nil)
	}
	return nil
}

// RequestStop asks the guest to power off (a virtual power button); Wait reports when it did.
func (m *machine) RequestStop(ctx context.Context) error {
	if !m.vm.CanRequestStop() {
		return errors.New("vz: the VM cannot be asked to stop in its current state")
	}
	if _, err := m.vm.RequestStop(); err != nil {
		return fmt.Errorf("vz: request stop: %w", err)
	}
	return nil
}

// DialGuest implements vmm.GuestDialer over the virtio socket device.
func (m *machine) DialGuest(ctx context.Context, port uint32) (net.Conn, error) {
	devs := m.vm.SocketDevices()
	if len(devs) == 0 {
		return nil, errors.New("vz: the VM has no socket device")
	}
	// Connect cannot be cancelled; DialContext closes whatever it returns too late.
	c, err := transport.DialContext(ctx, func() (net.Conn, error) {
		c, err := devs[0].Connect(port)
		if err != nil {
			return nil, err // a nil *VirtioSocketConnection is not a nil net.Conn
		}
		return c, nil
	})
	if err != nil && ctx.Err() == nil {
		return nil, fmt.Errorf("vz: vsock port %d: %w", port, err)
	}
	return c, err
}

// Describe implements vmm.Describer.
func (m *machine) Describe() map[string]string {
	out := make(map[string]string, len(m.describe))
	for k, v := range m.describe {
		out[k] = v
	}
	return out
}

// Reclaim implements vmm.Reclaimer: vz has only the traditional balloon, which returns
// nothing unless the host agent sets a target.
func (m *machine) Reclaim() string { return m.reclaim }

// balloon is the VM's traditional balloon device.
func (m *machine) balloon() (*vz.VirtioTraditionalMemoryBalloonDevice, error) {
	for _, d := range m.vm.MemoryBalloonDevices() {
		if b := vz.AsVirtioTraditionalMemoryBalloonDevice(d); b != nil {
			return b, nil
		}
	}
	return nil, errors.New("vz: the VM has no memory balloon device")
}

// SetMemoryTarget implements vmm.Balloon.
func (m *machine) SetMemoryTarget(_ context.Context, bytes uint64) error {
	b, err := m.balloon()
	if err != nil {
		return err
	}
	b.SetTargetVirtualMachineMemorySize(bytes)
	return nil
}

// MemoryTarget implements vmm.Balloon. vz tells the target it was given, not how far the
// guest has got towards it.
func (m *machine) MemoryTarget(context.Context) (uint64, error) {
	b, err := m.balloon()
	if err != nil {
		return 0, err
	}
	return b.GetTargetVirtualMachineMemorySize(), nil
}

var (
	_ vmm.Balloon     = (*machine)(nil)
	_ vmm.Reclaimer   = (*machine)(nil)
	_ vmm.Backend     = (*Backend)(nil)
	_ vmm.ShareKind   = (*Backend)(nil)
	_ vmm.GuestDialer = (*machine)(nil)
	_ vmm.Describer   = (*machine)(nil)
)
