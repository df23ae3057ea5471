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

// hvSim simulates the Hyper-V cmdlets behind PowerShell: VMs with a state.
type hvSim struct {
	t *testing.T
	winexectest.Fake

	mu      sync.Mutex
	vms     map[string]string // name -> state
	fail    map[string]string // script prefix -> stderr
	scripts []string
}

var scriptPrefix = winexec.PowerShellArgs("")[len(winexec.PowerShellArgs(""))-1]

func newSim(t *testing.T) *hvSim {
	s := &hvSim{t: t, vms: map[string]string{}, fail: map[string]string{}}
	s.RunFunc = s.run
	return s
}

func psFail(stderr string) winexectest.Result {
	return winexectest.Result{Stderr: []byte(stderr), Err: winexectest.ExitError(1)}
}

var (
	reGetID   = regexp.MustCompile(`^\$vm = Get-VM -Name '([^']+)' -ErrorAction SilentlyContinue; if \(\$vm\) \{ \$vm\.Id\.Guid \}$`)
	reConvert = regexp.MustCompile(`^Convert-VHD -Path '([^']+)' -DestinationPath '([^']+)' -VHDType Dynamic$`)
	reNewVM   = regexp.MustCompile(`^New-VM -Name '([^']+)' -Generation 2 `)
	reStart   = regexp.MustCompile(`^Start-VM -Name '([^']+)'$`)
	reState   = regexp.MustCompile(`^\(Get-VM -Name '([^']+)'\)\.State\.ToString\(\)$`)
	reTurnOff = regexp.MustCompile(`^Stop-VM -Name '([^']+)' -TurnOff -Force$`)
	reRemove  = regexp.MustCompile(`^Stop-VM -Name '([^']+)' -TurnOff -Force -ErrorAction SilentlyContinue; Remove-VM -Name '([^']+)' -Force$`)
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
	case reGetID.MatchString(script):
		if _, exists := s.vms[reGetID.FindStringSubmatch(script)[1]]; exists {
			return ok(vmGUID)
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
		name := reNewVM.FindStringSubmatch(script)[1]
		s.vms[name] = "Off"
		return ok(vmGUID)
	case reStart.MatchString(script):
		name := reStart.FindStringSubmatch(script)[1]
		if _, exists := s.vms[name]; !exists {
			return psFail(strings.ReplaceAll(outNoVM, "Get-VM", "Start-VM"))
		}
		s.vms[name] = "Running"
		return ok("")
	case reState.MatchString(script):
		st, exists := s.vms[reState.FindStringSubmatch(script)[1]]
		if !exists {
			return psFail(outNoVM)
		}
		return ok(st)
	case reTurnOff.MatchString(script):
		s.vms[reTurnOff.FindStringSubmatch(script)[1]] = "Off"
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

type fakeHvsock struct{}

func (fakeHvsock) Dial(ctx context.Context, id string, port uint32) (net.Conn, error) {
	if id != vmGUID {
		return nil, fmt.Errorf("no VM %s", id)
	}
	a, b := net.Pipe()
	b.Close()
	return a, nil
}
func (fakeHvsock) Listen(id string, port uint32) (net.Listener, error) {
	if id != vmGUID {
		return nil, fmt.Errorf("listen for unknown VM %s", id)
	}
	return net.Listen("tcp", "127.0.0.1:0") // a stand-in that nothing dials
}
func (fakeHvsock) OpenPipe(ctx context.Context, path string) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("Linux version 6.12 (serial)\n")), nil
}

type nopNetwork struct{}

func (nopNetwork) ServeStream(ctx context.Context, c net.Conn) error   { <-ctx.Done(); return nil }
func (nopNetwork) ServeDatagram(ctx context.Context, c net.Conn) error { <-ctx.Done(); return nil }

func testBackend(s *hvSim) *Backend {
	b := &Backend{Options: Options{PollInterval: 10 * time.Millisecond}, Run: s, Registry: &winexectest.Registry{}, Hvsock: fakeHvsock{}}
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
	vmmtest.Run(t, vmmtest.Harness{Backend: testBackend(s), Config: testConfig, BootTimeout: 30 * time.Second})
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
	if err := vm.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cfg.Dir, "hyperv")
	v := func(n string) string { return filepath.Join(dir, n) }
	want := []string{
		`$vm = Get-VM -Name 'skiff-dev' -ErrorAction SilentlyContinue; if ($vm) { $vm.Id.Guid }`,
		`Convert-VHD -Path '` + v("skiff-boot.vhd") + `' -DestinationPath '` + v("skiff-boot.vhdx") + `' -VHDType Dynamic`,
		`Convert-VHD -Path '` + v("skiff-root.vhd") + `' -DestinationPath '` + v("skiff-root.vhdx") + `' -VHDType Dynamic`,
		`Convert-VHD -Path '` + v("skiff-data.vhd") + `' -DestinationPath '` + v("skiff-data.vhdx") + `' -VHDType Dynamic`,
		`New-VM -Name 'skiff-dev' -Generation 2 -MemoryStartupBytes 2048MB -NoVHD -Path '` + dir + `' | Out-Null; ` +
			`Set-VMFirmware -VMName 'skiff-dev' -EnableSecureBoot Off; ` +
			`Set-VMProcessor -VMName 'skiff-dev' -Count 2; ` +
			`Set-VMMemory -VMName 'skiff-dev' -DynamicMemoryEnabled $false -StartupBytes 2048MB; ` +
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
	if d, ok := vm.(vmm.GuestDialer); !ok {
		t.Fatal("no GuestDialer")
	} else if c, err := d.DialGuest(ctx, 1024); err != nil {
		t.Fatalf("DialGuest did not use the VM's id: %v", err)
	} else {
		c.Close()
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
	b := &Backend{Run: newSim(t), Registry: &winexectest.Registry{DenyWrites: true}, Hvsock: fakeHvsock{}}
	wantErr(t, b.Install(context.Background()), winexec.ErrNeedAdmin, InstallCommand, "Run as administrator")
	_, err := b.Start(context.Background(), testConfig(t))
	wantErr(t, err, nil, "not registered", InstallCommand)
}

func TestVMExistsNotOurs(t *testing.T) {
	s := newSim(t)
	s.vms["skiff-dev"] = "Off"
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
	s.vms["skiff-dev"] = "Off" // the guest powered itself off
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
