package hyperv

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/vmm"
	"github.com/skiff-dev/skiff/vmm/vmmtest"
	"github.com/skiff-dev/skiff/vmm/winexec"
	"github.com/skiff-dev/skiff/vmm/winexec/winexectest"
)

// Real PowerShell error output (stderr) of the Hyper-V cmdlets.
const (
	outNoPermission = "Get-VMHost : You do not have the required permission to complete this task. Contact the administrator of the authorization policy for the computer 'DESKTOP-1'.\nAt line:1 char:1\n+ Get-VMHost | Out-Null\n+ ~~~~~~~~~~\n    + CategoryInfo          : PermissionDenied: (:) [Get-VMHost], VirtualizationException\n    + FullyQualifiedErrorId : InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVMHost\n"
	outNoHyperV     = "Get-VMHost : The term 'Get-VMHost' is not recognized as the name of a cmdlet, function, script file, or operable program. Check the spelling of the name, or if a path was included, verify that the path is correct and try again.\nAt line:1 char:1\n+ Get-VMHost | Out-Null\n    + CategoryInfo          : ObjectNotFound: (Get-VMHost:String) [], CommandNotFoundException\n    + FullyQualifiedErrorId : CommandNotFoundException\n"
	outNoVM         = "Get-VM : Hyper-V was unable to find a virtual machine with name \"skiff-dev\".\nAt line:1 char:2\n    + CategoryInfo          : InvalidArgument: (skiff-dev:String) [Get-VM], VirtualizationException\n"
	vmGUID          = "8e3f1c2a-5b6d-4e7f-9a0b-1c2d3e4f5a6b"
)

// hvSim simulates the Hyper-V cmdlets behind PowerShell: VMs with a state, and a guest
// that counts its boots (a resumed guest has not booted again).
type hvSim struct {
	t *testing.T
	winexectest.Fake

	mu      sync.Mutex
	vms     map[string]*simVM // by name
	created int
	version string            // of vmms.exe
	fail    map[string]string // script prefix -> stderr
	scripts []string
}

type simVM struct {
	id    string
	state string // Off, Running, Saved
	boots int
}

var scriptPrefix = winexec.PowerShellArgs("")[len(winexec.PowerShellArgs(""))-1]

func newSim(t *testing.T) *hvSim {
	s := &hvSim{t: t, vms: map[string]*simVM{}, fail: map[string]string{}, version: "10.0.22631.4317"}
	s.RunFunc = s.run
	return s
}

func psFail(stderr string) winexectest.Result {
	return winexectest.Result{Stderr: []byte(stderr), Err: winexectest.ExitError(1)}
}

// outBadState is what the Hyper-V cmdlets print for a state transition the VM cannot make
// (as reported publicly; not checked on a real host).
func outBadState(cmdlet, name string) string {
	return fmt.Sprintf("%s : '%s' failed to change state.\nThe operation cannot be performed while the object is in its current state.\n", cmdlet, name)
}

// simID is the ID of the n-th VM the simulator creates; the first is vmGUID.
func simID(n int) string { return fmt.Sprintf("8e3f1c2a-5b6d-4e7f-9a0b-%012x", 0x1c2d3e4f5a6b+n) }

var (
	reInfo    = regexp.MustCompile(`^\$vm = Get-VM -Name '([^']+)' -ErrorAction SilentlyContinue; if \(\$vm\) \{ '\{0\} \{1\}' -f \$vm\.Id\.Guid, \$vm\.State \}$`)
	reConvert = regexp.MustCompile(`^Convert-VHD -Path '([^']+)' -DestinationPath '([^']+)' -VHDType Dynamic$`)
	reNewVM   = regexp.MustCompile(`^New-VM -Name '([^']+)' -Generation 2 `)
	reStart   = regexp.MustCompile(`^Start-VM -Name '([^']+)'$`)
	reState   = regexp.MustCompile(`^\(Get-VM -Name '([^']+)'\)\.State\.ToString\(\)$`)
	reTurnOff = regexp.MustCompile(`^Stop-VM -Name '([^']+)' -TurnOff -Force$`)
	reRemove  = regexp.MustCompile(`^Stop-VM -Name '([^']+)' -TurnOff -Force -ErrorAction SilentlyContinue; Remove-VM -Name '([^']+)' -Force$`)
	reSave    = regexp.MustCompile(`^Save-VM -Name '([^']+)'$`)
	reDiscard = regexp.MustCompile(`^Remove-VMSavedState -VMName '([^']+)' -Confirm:\$false$`)
)

func (s *hvSim) run(c winexectest.Call) winexectest.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	args := winexec.PowerShellArgs("")
	if c.Name != "powershell.exe" || len(c.Args) != len(args) || !slices.Equal(c.Args[:len(args)-1], args[:len(args)-1]) ||
		!strings.HasPrefix(c.Args[len(args)-1], scriptPrefix) {
		s.t.Errorf("not a PowerShell script run: %s", c)
		return psFail("bad command")
	}
	script := strings.TrimPrefix(c.Args[len(args)-1], scriptPrefix)
	s.scripts = append(s.scripts, script)
	for p, out := range s.fail {
		if strings.HasPrefix(script, p) {
			return psFail(out)
		}
	}
	ok := func(out string) winexectest.Result { return winexectest.Result{Stdout: []byte(out + "\r\n")} }
	switch {
	case script == "Get-VMHost | Out-Null":
		return ok("")
	case script == hypervVersion:
		return ok(s.version)
	case reInfo.MatchString(script):
		if vm := s.vms[reInfo.FindStringSubmatch(script)[1]]; vm != nil {
			return ok(vm.id + " " + vm.state)
		}
		return ok("")
	case reConvert.MatchString(script):
		m := reConvert.FindStringSubmatch(script)
		b, err := os.ReadFile(m[1])
		if err != nil || len(b) < 1024 || len(b)%512 != 0 || string(b[len(b)-512:len(b)-504]) != "conectix" {
			return psFail(fmt.Sprintf("Convert-VHD : The file '%s' is not a valid virtual hard disk file.", m[1]))
		}
		os.WriteFile(m[2], []byte("vhdx"), 0o644)
		return ok("")
	case reNewVM.MatchString(script):
		vm := &simVM{id: simID(s.created), state: "Off"}
		s.created++
		s.vms[reNewVM.FindStringSubmatch(script)[1]] = vm
		return ok(vm.id)
	case reStart.MatchString(script):
		name := reStart.FindStringSubmatch(script)[1]
		vm := s.vms[name]
		switch {
		case vm == nil:
			return psFail(strings.ReplaceAll(outNoVM, "Get-VM", "Start-VM"))
		case vm.state == "Off":
			vm.boots++
		case vm.state != "Saved": // a Saved VM resumes: no boot
			return psFail(outBadState("Start-VM", name))
		}
		vm.state = "Running"
		return ok("")
	case reSave.MatchString(script):
		name := reSave.FindStringSubmatch(script)[1]
		if vm := s.vms[name]; vm == nil || vm.state != "Running" {
			return psFail(outBadState("Save-VM", name))
		}
		s.vms[name].state = "Saved"
		return ok("")
	case reDiscard.MatchString(script):
		name := reDiscard.FindStringSubmatch(script)[1]
		if vm := s.vms[name]; vm == nil || vm.state != "Saved" {
			return psFail(outBadState("Remove-VMSavedState", name))
		}
		s.vms[name].state = "Off"
		return ok("")
	case reState.MatchString(script):
		vm := s.vms[reState.FindStringSubmatch(script)[1]]
		if vm == nil {
			return psFail(outNoVM)
		}
		return ok(vm.state)
	case reTurnOff.MatchString(script):
		if vm := s.vms[reTurnOff.FindStringSubmatch(script)[1]]; vm != nil {
			vm.state = "Off"
		}
		return ok("")
	case reRemove.MatchString(script):
		delete(s.vms, reRemove.FindStringSubmatch(script)[1])
		return ok("")
	}
	s.t.Errorf("unexpected script: %s", script)
	return psFail("unexpected")
}

func (s *hvSim) Scripts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.scripts)
}

// byID finds a simulated VM by its ID.
func (s *hvSim) byID(id string) *simVM {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, vm := range s.vms {
		if vm.id == id {
			return vm
		}
	}
	return nil
}

// fakeHvsock reaches the simulated VMs: a running guest answers every port with the
// number of times it booted.
type fakeHvsock struct{ sim *hvSim }

func (f fakeHvsock) Dial(ctx context.Context, id string, port uint32) (net.Conn, error) {
	vm := f.sim.byID(id)
	if vm == nil {
		return nil, fmt.Errorf("no VM %s", id)
	}
	f.sim.mu.Lock()
	state, boots := vm.state, vm.boots
	f.sim.mu.Unlock()
	if state != "Running" {
		return nil, fmt.Errorf("hvsock connect to %s: the VM is %s", id, state)
	}
	a, b := net.Pipe()
	go func() {
		fmt.Fprintf(b, "boot %d\n", boots)
		b.Close()
	}()
	return a, nil
}
func (f fakeHvsock) Listen(id string, port uint32) (net.Listener, error) {
	if f.sim.byID(id) == nil {
		return nil, fmt.Errorf("listen for unknown VM %s", id)
	}
	return net.Listen("tcp", "127.0.0.1:0") // a stand-in that nothing dials
}
func (fakeHvsock) OpenPipe(ctx context.Context, path string) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("Linux version 6.12 (serial)\n")), nil
}

// guestBoot asks the simulated guest how often it booted.
func guestBoot(ctx context.Context, vm vmm.VM) (string, error) {
	c, err := vm.(vmm.GuestDialer).DialGuest(ctx, DefaultTransportPort)
	if err != nil {
		return "", err
	}
	defer c.Close()
	b, err := io.ReadAll(c)
	return strings.TrimSpace(string(b)), err
}

type nopNetwork struct{}

func (nopNetwork) ServeStream(ctx context.Context, c net.Conn) error      { <-ctx.Done(); return nil }
func (nopNetwork) ServeDatagram(ctx context.Context, c net.Conn) error    { <-ctx.Done(); return nil }
func (nopNetwork) ServeGuestStream(ctx context.Context, c net.Conn) error { <-ctx.Done(); return nil }

func testBackend(s *hvSim) *Backend {
	b := &Backend{Options: Options{PollInterval: 10 * time.Millisecond}, Run: s, Registry: &winexectest.Registry{}, Hvsock: fakeHvsock{s}}
	if err := b.Install(context.Background()); err != nil {
		panic(err)
	}
	return b
}

func testConfig(t *testing.T) vmm.Config {
	dir := vmmtest.TempDir(t)
	img := filepath.Join(dir, "image")
	os.MkdirAll(img, 0o755)
	write := func(name string, size int) string {
		p := filepath.Join(img, name)
		if err := os.WriteFile(p, bytes.Repeat([]byte{1}, size), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("vmlinuz", 10)
	write("initrd.img", 10)
	write(BootDiskName, 4096)
	return vmm.Config{
		Name: "dev", Dir: dir, RunDir: dir, Arch: "amd64", CPUs: 2, MemoryMiB: 2048,
		Kernel: filepath.Join(img, "vmlinuz"), Initrd: filepath.Join(img, "initrd.img"),
		Disks: []vmm.Disk{
			{Path: write("root.squashfs", 3000), Serial: "skiff-root", ReadOnly: true}, // not sector-aligned
			{Path: write("data.img", 8192), Serial: "skiff-data"},
		},
		SerialLog: filepath.Join(dir, "serial.log"),
		Network:   nopNetwork{},
	}
}

func TestConformance(t *testing.T) {
	s := newSim(t)
	var mu sync.Mutex
	n := 0
	booted := map[string]string{} // machine -> what its guest said when it came up
	vmmtest.Run(t, vmmtest.Harness{
		Backend: testBackend(s),
		// Each test gets its own VM: a VM left by an earlier test is not this machine's.
		Config: func(t *testing.T) vmm.Config {
			cfg := testConfig(t)
			mu.Lock()
			n++
			cfg.Name = fmt.Sprintf("c%d", n)
			mu.Unlock()
			return cfg
		},
		GuestUp: func(ctx context.Context, t *testing.T, cfg vmm.Config, vm vmm.VM) error {
			boot, err := guestBoot(ctx, vm)
			mu.Lock()
			booted[cfg.Name] = boot
			mu.Unlock()
			return err
		},
		// The restored guest answers and has not booted again.
		Alive: func(ctx context.Context, t *testing.T, cfg vmm.Config, vm vmm.VM) error {
			boot, err := guestBoot(ctx, vm)
			mu.Lock()
			defer mu.Unlock()
			if err == nil && boot != booted[cfg.Name] {
				err = fmt.Errorf("the guest says %q, before the suspend %q: it booted again", boot, booted[cfg.Name])
			}
			return err
		},
		BootTimeout: 30 * time.Second,
	})
}

func TestExactScripts(t *testing.T) {
	s := newSim(t)
	b := testBackend(s)
	cfg := testConfig(t)
	ctx := context.Background()
	vm, err := b.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if boot, err := guestBoot(ctx, vm); err != nil || boot != "boot 1" {
		t.Fatalf("DialGuest did not reach the VM by its id: %q, %v", boot, err)
	}
	if err := vm.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cfg.Dir, "hyperv")
	v := func(n string) string { return filepath.Join(dir, n) }
	want := []string{
		`$vm = Get-VM -Name 'skiff-dev' -ErrorAction SilentlyContinue; if ($vm) { '{0} {1}' -f $vm.Id.Guid, $vm.State }`,
		`Convert-VHD -Path '` + v("skiff-boot.vhd") + `' -DestinationPath '` + v("skiff-boot.vhdx") + `' -VHDType Dynamic`,
		`Convert-VHD -Path '` + v("skiff-root.vhd") + `' -DestinationPath '` + v("skiff-root.vhdx") + `' -VHDType Dynamic`,
		`Convert-VHD -Path '` + v("skiff-data.vhd") + `' -DestinationPath '` + v("skiff-data.vhdx") + `' -VHDType Dynamic`,
		`New-VM -Name 'skiff-dev' -Generation 2 -MemoryStartupBytes 2048MB -NoVHD -Path '` + dir + `' | Out-Null; ` +
			`Set-VMFirmware -VMName 'skiff-dev' -EnableSecureBoot Off; ` +
			`Set-VMProcessor -VMName 'skiff-dev' -Count 2; ` +
			`Set-VMMemory -VMName 'skiff-dev' -DynamicMemoryEnabled $true -MinimumBytes 512MB -StartupBytes 2048MB -MaximumBytes 2048MB -Buffer 20; ` +
			`Add-VMHardDiskDrive -VMName 'skiff-dev' -ControllerType SCSI -ControllerNumber 0 -ControllerLocation 0 -Path '` + v("skiff-boot.vhdx") + `'; ` +
			`Add-VMHardDiskDrive -VMName 'skiff-dev' -ControllerType SCSI -ControllerNumber 0 -ControllerLocation 1 -Path '` + v("skiff-root.vhdx") + `'; ` +
			`Add-VMHardDiskDrive -VMName 'skiff-dev' -ControllerType SCSI -ControllerNumber 0 -ControllerLocation 2 -Path '` + v("skiff-data.vhdx") + `'; ` +
			`Set-VMFirmware -VMName 'skiff-dev' -FirstBootDevice (Get-VMHardDiskDrive -VMName 'skiff-dev' -ControllerLocation 0); ` +
			`Set-VMComPort -VMName 'skiff-dev' -Number 1 -Path '\\.\pipe\skiff-dev-com1'; ` +
			`Set-VM -Name 'skiff-dev' -AutomaticCheckpointsEnabled $false -AutomaticStartAction Nothing -AutomaticStopAction TurnOff; ` +
			`(Get-VM -Name 'skiff-dev').Id.Guid`,
		`Start-VM -Name 'skiff-dev'`,
	}
	got := s.Scripts()
	// Wait's state polls interleave; compare the rest in order.
	got = slices.DeleteFunc(got, func(s string) bool { return reState.MatchString(s) })
	want = append(want, `Stop-VM -Name 'skiff-dev' -TurnOff -Force`)
	if !slices.Equal(got, want) {
		t.Fatalf("scripts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := os.Stat(v("skiff-root.vhd")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("temporary VHD left behind")
	}
}

func wantErr(t *testing.T, err, target error, says ...string) {
	t.Helper()
	if err == nil || (target != nil && !errors.Is(err, target)) {
		t.Fatalf("error %v; want %v", err, target)
	}
	for _, s := range says {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("error %q does not say %q", err, s)
		}
	}
}

func TestHyperVMissing(t *testing.T) {
	s := newSim(t)
	s.fail["Get-VMHost"] = outNoHyperV
	wantErr(t, testBackend(s).Check(context.Background()), ErrHyperVMissing, "Enable-WindowsOptionalFeature -Online -FeatureName Microsoft-Hyper-V -All", "restart Windows")
}

func TestNoAdminRights(t *testing.T) {
	s := newSim(t)
	s.fail["Get-VMHost"] = outNoPermission
	wantErr(t, testBackend(s).Check(context.Background()), ErrNeedAdmin, "Hyper-V Administrators", "Run as administrator")

	// The registry step: refused without elevation, named when skipped.
	sim := newSim(t)
	b := &Backend{Run: sim, Registry: &winexectest.Registry{DenyWrites: true}, Hvsock: fakeHvsock{sim}}
	wantErr(t, b.Install(context.Background()), winexec.ErrNeedAdmin, InstallCommand, "Run as administrator")
	_, err := b.Start(context.Background(), testConfig(t))
	wantErr(t, err, nil, "not registered", InstallCommand)
}

func TestVMExistsNotOurs(t *testing.T) {
	s := newSim(t)
	s.vms["skiff-dev"] = &simVM{id: vmGUID, state: "Off"}
	b := testBackend(s)
	wantErr(t, b.Prepare(context.Background(), testConfig(t)), ErrVMExists, "Remove-VM -Name skiff-dev")
	wantErr(t, b.Remove(context.Background(), testConfig(t)), nil, "not created by this machine")
}

func TestWaitSeesGuestPowerOff(t *testing.T) {
	s := newSim(t)
	b := testBackend(s)
	cfg := testConfig(t)
	vm, err := b.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.vms["skiff-dev"].state = "Off" // the guest powered itself off
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := vm.Wait(ctx); err != nil {
		t.Fatalf("Wait after a guest power-off: %v", err)
	}
	log, _ := os.ReadFile(cfg.SerialLog)
	if !strings.Contains(string(log), "Linux version") {
		t.Fatalf("COM1 not copied to the serial log: %q", log)
	}
}

func TestVHDFooter(t *testing.T) {
	size := int64(128 << 20)
	f := vhdFooter(size, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), [16]byte{1, 2, 3})
	if len(f) != 512 || string(f[:8]) != "conectix" {
		t.Fatal("bad cookie or length")
	}
	if binary.BigEndian.Uint32(f[60:]) != 2 || binary.BigEndian.Uint64(f[48:]) != uint64(size) || binary.BigEndian.Uint64(f[16:]) != ^uint64(0) {
		t.Fatal("bad disk type, size or data offset")
	}
	if got := binary.BigEndian.Uint32(f[64:]); got != vhdChecksum(f) {
		t.Fatalf("checksum %x, want %x", got, vhdChecksum(f))
	}
	// Worked through the spec's algorithm by hand: 128 MiB stays at 17 sectors per track;
	// 256 MiB overflows 16 heads at 17 and at 31, landing on 63.
	for _, tc := range []struct {
		size int64
		c    uint16
		h, s uint8
	}{{size, 963, 16, 17}, {256 << 20, 520, 16, 63}, {4096, 0, 4, 17}} {
		if c, h, s := chs(tc.size); c != tc.c || h != tc.h || s != tc.s {
			t.Fatalf("chs(%d) = %d/%d/%d, want %d/%d/%d", tc.size, c, h, s, tc.c, tc.h, tc.s)
		}
	}
	if c, h, s := chs(1 << 40); c != 65535 || h != 16 || s != 255 {
		t.Fatalf("chs(1TiB) = %d/%d/%d, want the maximum 65535/16/255", c, h, s)
	}
}

// TestMachineRemoval: rm takes the machine's VM with it, so init -> start -> rm -> init of
// the same name works, and never a VM of that name that Skiff did not create.
func TestMachineRemoval(t *testing.T) {
	s := newSim(t)
	vmmtest.Removal(t, vmmtest.RemovalHarness{
		Backend: testBackend(s),
		Config: func(t *testing.T, base vmm.Config) vmm.Config {
			cfg := testConfig(t)
			cfg.Name, cfg.Dir, cfg.RunDir = base.Name, base.Dir, base.RunDir
			return cfg
		},
		Exists: func(name string) bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.vms[VMName(name)] != nil
		},
		Foreign: func(name string) {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.vms[VMName(name)] = &simVM{id: "4a5ab4c1-0000-4000-8000-00000000f00d", state: "Off"}
		},
	})
}

// The VM has no NIC: the host agent tells the guest (in its seed) to carry its network to
// the port this backend serves.
func TestNetworkOverVsock(t *testing.T) {
	if got := testBackend(newSim(t)).NetworkVsockPort(); got != DefaultNetworkPort {
		t.Fatalf("network vsock port %d, want %d", got, DefaultNetworkPort)
	}
	if got := (&Backend{Options: Options{NetworkPort: 2000}}).NetworkVsockPort(); got != 2000 {
		t.Fatalf("network vsock port %d with Options.NetworkPort 2000", got)
	}
}
