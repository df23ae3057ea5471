package wsl2

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/images"
	"github.com/skiff-dev/skiff/vmm"
	"github.com/skiff-dev/skiff/vmm/vmmtest"
	"github.com/skiff-dev/skiff/vmm/winexec"
	"github.com/skiff-dev/skiff/vmm/winexec/winexectest"
)

// Real wsl.exe output (UTF-16LE on the wire), as WSL 2.x prints it.
const (
	outNotInstalled = "The Windows Subsystem for Linux is not installed. You can install by running 'wsl.exe --install'.\nFor more information please visit https://aka.ms/wslinstall\n"
	outNoDistros    = "Windows Subsystem for Linux has no installed distributions.\nYou can resolve this by installing a distribution with the instructions below:\n\nUse 'wsl.exe --list --online' to list available distributions\nand 'wsl.exe --install <Distro>' to install.\n"
	outExists       = "A distribution with the supplied name already exists. Use --name to choose a different name.\nError code: Wsl/Service/RegisterDistro/ERROR_ALREADY_EXISTS\n"
	outNoVMP        = "WSL2 is not supported with your current machine configuration.\nPlease enable the \"Virtual Machine Platform\" optional component and ensure virtualization is enabled in the BIOS.\nEnable \"Virtual Machine Platform\" by running: wsl.exe --install --no-distribution\nFor information please visit https://aka.ms/enablevirtualization\nError code: Wsl/Service/RegisterDistro/CreateVm/HCS/HCS_E_HYPERV_NOT_INSTALLED\n"
	outAccess       = "Access is denied.\nError code: Wsl/Service/RegisterDistro/E_ACCESSDENIED\n"
	outStatus       = "Default Version: 2\n"
)

// wslSim simulates wsl.exe: registered distros, running ones, and canned failures.
type wslSim struct {
	t *testing.T
	winexectest.Fake

	mu         sync.Mutex
	distros    []string
	running    map[string]*winexectest.Process
	fail       map[string]string // first argument -> output of a failure
	notFound   bool              // wsl.exe is not on PATH
	bootChecks func(args []string)
}

func newSim(t *testing.T, distros ...string) *wslSim {
	s := &wslSim{t: t, distros: distros, running: map[string]*winexectest.Process{}, fail: map[string]string{}}
	s.RunFunc = s.run
	s.SpawnFunc = s.spawn
	return s
}

func fail(out string) winexectest.Result {
	return winexectest.Result{Stdout: winexectest.UTF16(out), Err: winexectest.ExitError(1)}
}

func (s *wslSim) run(c winexectest.Call) winexectest.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.notFound {
		return winexectest.Result{Err: &exec.Error{Name: "wsl.exe", Err: exec.ErrNotFound}}
	}
	if c.Name != "wsl.exe" || len(c.Args) == 0 {
		s.t.Errorf("unexpected command %s", c)
		return winexectest.Result{Err: errors.New("bad command")}
	}
	if out, ok := s.fail[c.Args[0]]; ok {
		return fail(out)
	}
	switch c.Args[0] {
	case "--status":
		return winexectest.Result{Stdout: winexectest.UTF16(outStatus)}
	case "--list":
		if !slices.Equal(c.Args, []string{"--list", "--quiet"}) {
			s.t.Errorf("list: %s", c)
		}
		if len(s.distros) == 0 {
			return fail(outNoDistros)
		}
		return winexectest.Result{Stdout: winexectest.UTF16(strings.Join(s.distros, "\n") + "\n")}
	case "--import":
		if len(c.Args) != 6 || c.Args[4] != "--version" || c.Args[5] != "2" {
			s.t.Errorf("import: %s", c)
		}
		if slices.Contains(s.distros, c.Args[1]) {
			return fail(outExists)
		}
		if _, err := os.Stat(c.Args[3]); err != nil {
			s.t.Errorf("import of a missing tar: %v", err)
		}
		s.distros = append(s.distros, c.Args[1])
		return winexectest.Result{Stdout: winexectest.UTF16("The operation completed successfully.\n")}
	case "--terminate":
		if p := s.running[c.Args[1]]; p != nil {
			p.Exit(winexectest.ExitError(1))
			delete(s.running, c.Args[1])
		}
		return winexectest.Result{Stdout: winexectest.UTF16("The operation completed successfully.\n")}
	case "--unregister":
		i := slices.Index(s.distros, c.Args[1])
		if i < 0 {
			return fail("There is no distribution with the supplied name.\nError code: Wsl/Service/WSL_E_DISTRO_NOT_FOUND\n")
		}
		s.distros = slices.Delete(s.distros, i, i+1)
		return winexectest.Result{Stdout: winexectest.UTF16("Unregistering.\nThe operation completed successfully.\n")}
	}
	s.t.Errorf("unexpected command %s", c)
	return winexectest.Result{Err: errors.New("bad command")}
}

func (s *wslSim) spawn(c winexectest.Call, o winexec.SpawnOptions) (winexec.Process, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.Name != "wsl.exe" || len(c.Args) < 7 || !slices.Equal(c.Args[:7], []string{"-d", c.Args[1], "-u", "root", "--", AgentPath, "boot-wsl"}) {
		s.t.Errorf("boot: %s", c)
	}
	if !slices.Contains(s.distros, c.Args[1]) {
		return nil, fmt.Errorf("distro %s not registered", c.Args[1])
	}
	if s.bootChecks != nil {
		s.bootChecks(c.Args)
	}
	fmt.Fprintln(o.Output, "skiff-agent: booting in WSL")
	p := winexectest.NewProcess()
	s.running[c.Args[1]] = p
	return p, nil
}

// fakeHvsock accepts nothing until closed, and dials only VM IDs listed in accept.
type fakeHvsock struct {
	ids    []string
	accept map[string]bool
	dialed []string
	mu     sync.Mutex
}

func (h *fakeHvsock) VMIDs() ([]string, error) { return h.ids, nil }
func (h *fakeHvsock) Dial(ctx context.Context, id string, port uint32) (net.Conn, error) {
	h.mu.Lock()
	h.dialed = append(h.dialed, fmt.Sprintf("%s:%d", id, port))
	h.mu.Unlock()
	if !h.accept[id] {
		return nil, fmt.Errorf("connect %s: connection refused", id)
	}
	a, b := net.Pipe()
	go b.Close()
	return a, nil
}
func (h *fakeHvsock) Listen(port uint32) (net.Listener, error) { return newIdleListener(), nil }

type idleListener struct {
	once   sync.Once
	closed chan struct{}
}

func newIdleListener() *idleListener { return &idleListener{closed: make(chan struct{})} }
func (l *idleListener) Accept() (net.Conn, error) {
	<-l.closed
	return nil, net.ErrClosed
}
func (l *idleListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *idleListener) Addr() net.Addr { return &net.UnixAddr{Name: "hvsock", Net: "hvsock"} }

type nopNetwork struct{}

func (nopNetwork) ServeStream(ctx context.Context, c net.Conn) error      { <-ctx.Done(); return nil }
func (nopNetwork) ServeDatagram(ctx context.Context, c net.Conn) error    { <-ctx.Done(); return nil }
func (nopNetwork) ServeGuestStream(ctx context.Context, c net.Conn) error { <-ctx.Done(); return nil }

func testBackend(s *wslSim) (*Backend, *winexectest.Registry) {
	reg := &winexectest.Registry{}
	b := &Backend{Run: s, Spawn: s, Registry: reg, Hvsock: &fakeHvsock{}}
	if err := b.Install(context.Background()); err != nil {
		panic(err)
	}
	return b, reg
}

func testConfig(t *testing.T) vmm.Config {
	dir := vmmtest.TempDir(t)
	img := filepath.Join(dir, "image")
	os.MkdirAll(img, 0o755)
	for _, f := range []string{"vmlinuz", "initrd.img", RootfsName, "seed.img"} {
		if err := os.WriteFile(filepath.Join(img, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return vmm.Config{
		Name: "dev", Dir: dir, RunDir: dir, Arch: "amd64", CPUs: 2, MemoryMiB: 2048,
		Kernel: filepath.Join(img, "vmlinuz"), Initrd: filepath.Join(img, "initrd.img"),
		Disks:     []vmm.Disk{{Path: `C:\Users\me\.skiff\dev\seed.img`, Serial: SeedSerial, ReadOnly: true}},
		SerialLog: filepath.Join(dir, "serial.log"),
		Network:   nopNetwork{},
	}
}

func TestConformance(t *testing.T) {
	s := newSim(t, "Ubuntu", "docker-desktop")
	b, _ := testBackend(s)
	vmmtest.Run(t, vmmtest.Harness{Backend: b, Config: testConfig, BootTimeout: 30 * time.Second})
}

func TestExactCommands(t *testing.T) {
	s := newSim(t)
	b, _ := testBackend(s)
	cfg := testConfig(t)
	ctx := context.Background()
	s.bootChecks = func(args []string) {
		want := []string{"-d", "skiff-dev", "-u", "root", "--", "/usr/sbin/skiff-agent", "boot-wsl",
			"--seed", "/mnt/c/Users/me/.skiff/dev/seed.img", "--network", "wsl"}
		if !slices.Equal(args, want) {
			t.Errorf("boot args %q\nwant %q", args, want)
		}
	}
	vm, err := b.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Remove(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"wsl.exe --list --quiet",
		"wsl.exe --import skiff-dev " + filepath.Join(cfg.Dir, "wsl") + " " + filepath.Join(filepath.Dir(cfg.Kernel), RootfsName) + " --version 2",
		"wsl.exe -d skiff-dev -u root -- /usr/sbin/skiff-agent boot-wsl --seed /mnt/c/Users/me/.skiff/dev/seed.img --network wsl",
		"wsl.exe --terminate skiff-dev",
		"wsl.exe --list --quiet",
		"wsl.exe --unregister skiff-dev",
	}
	if got := s.Calls(); !slices.Equal(got, want) {
		t.Fatalf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	log, _ := os.ReadFile(cfg.SerialLog)
	if !strings.Contains(string(log), "booting in WSL") {
		t.Fatalf("agent output not in the serial log: %q", log)
	}
}

// wantErr checks that err is target and tells the user what to do.
func wantErr(t *testing.T, err, target error, says ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want %v", target)
	}
	if target != nil && !errors.Is(err, target) {
		t.Fatalf("error %q is not %q", err, target)
	}
	for _, s := range says {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("error %q does not say %q", err, s)
		}
	}
}

func TestDistroAlreadyExists(t *testing.T) {
	// A distro of that name that this machine did not create: never touch it.
	s := newSim(t, "Ubuntu", "skiff-dev")
	b, _ := testBackend(s)
	cfg := testConfig(t)
	err := b.Prepare(context.Background(), cfg)
	wantErr(t, err, ErrDistroExists, "skiff-dev", "wsl --unregister skiff-dev", "another machine name")
	err = b.Remove(context.Background(), cfg)
	wantErr(t, err, nil, "not created by this machine")
	if slices.Contains(s.Calls(), "wsl.exe --unregister skiff-dev") {
		t.Fatal("Remove unregistered a distro it does not own")
	}

	// The distro appears between the list and the import (another skiff, a user).
	s = newSim(t)
	b, _ = testBackend(s)
	s.fail["--import"] = outExists
	wantErr(t, b.Prepare(context.Background(), testConfig(t)), ErrDistroExists, "wsl --unregister skiff-dev")
}

func TestWSLNotInstalled(t *testing.T) {
	s := newSim(t)
	b, _ := testBackend(s)
	s.notFound = true
	wantErr(t, b.Check(context.Background()), ErrNotInstalled, "wsl --install --no-distribution", "Run as administrator")
	s.notFound = false
	s.fail["--status"] = outNotInstalled
	wantErr(t, b.Check(context.Background()), ErrNotInstalled, "wsl --install --no-distribution")
}

func TestWSL1Only(t *testing.T) {
	s := newSim(t)
	b, _ := testBackend(s)
	s.fail["--import"] = outNoVMP
	wantErr(t, b.Prepare(context.Background(), testConfig(t)), ErrWSL1Only, "Virtual Machine Platform", "firmware", "restart Windows")

	s = newSim(t)
	b, _ = testBackend(s)
	s.RunFunc = func(c winexectest.Call) winexectest.Result {
		return winexectest.Result{Stdout: winexectest.UTF16("Default Version: 1\n\nWSL 2 requires an update to its kernel component. For information please visit https://aka.ms/wsl2kernel\n")}
	}
	wantErr(t, b.Check(context.Background()), ErrWSL1Only, "wsl --update")
}

func TestNoAdminRights(t *testing.T) {
	s := newSim(t)
	reg := &winexectest.Registry{DenyWrites: true}
	b := &Backend{Run: s, Spawn: s, Registry: reg, Hvsock: &fakeHvsock{}}
	wantErr(t, b.Install(context.Background()), winexec.ErrNeedAdmin, "Run as administrator", InstallCommand)
	// Start before the install step names the step instead of failing obscurely later.
	_, err := b.Start(context.Background(), testConfig(t))
	wantErr(t, err, nil, "not registered", InstallCommand, "Run as administrator")

	s = newSim(t)
	b, _ = testBackend(s)
	s.fail["--import"] = outAccess
	wantErr(t, b.Prepare(context.Background(), testConfig(t)), ErrNeedAdmin, "Run as administrator")
}

func TestWSLNetworkModeNeedsNoNetworkService(t *testing.T) {
	b := &Backend{Options: Options{Network: NetworkWSL}}
	for _, s := range b.Services() {
		if s.Port == DefaultNetworkPort {
			t.Fatal("wsl network mode registers the user-mode network port")
		}
	}
	if len((&Backend{Options: Options{Network: NetworkUser}}).Services()) != 2 {
		t.Fatal("user network mode must register transport and network ports")
	}
}

func TestDialGuestFindsTheWSLVM(t *testing.T) {
	h := &fakeHvsock{ids: []string{"11111111-0000-0000-0000-000000000000", "22222222-0000-0000-0000-000000000000"},
		accept: map[string]bool{"22222222-0000-0000-0000-000000000000": true}}
	m := &machine{b: &Backend{Hvsock: h}, name: "skiff-dev"}
	for i := 0; i < 2; i++ {
		c, err := m.DialGuest(context.Background(), 1024)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	want := []string{"11111111-0000-0000-0000-000000000000:1024", "22222222-0000-0000-0000-000000000000:1024", "22222222-0000-0000-0000-000000000000:1024"}
	if !slices.Equal(h.dialed, want) {
		t.Fatalf("dialed %v, want %v (the answering VM remembered)", h.dialed, want)
	}
	h.accept = nil
	_, err := m.DialGuest(context.Background(), 1024)
	wantErr(t, err, nil, "hvsock port 1024")
}

func TestGuestPath(t *testing.T) {
	for in, want := range map[string]string{
		`C:\Users\me\src`: "/mnt/c/Users/me/src",
		`d:\`:             "/mnt/d",
		`E:`:              "/mnt/e",
		`C:/Users/me/x y`: "/mnt/c/Users/me/x y",
	} {
		got, err := GuestPath(in)
		if err != nil || got != want {
			t.Errorf("GuestPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{`\\server\share\x`, `relative\path`, ""} {
		if _, err := GuestPath(bad); err == nil {
			t.Errorf("GuestPath(%q) accepted", bad)
		}
	}
}

// TestMachineRemoval: rm unregisters the machine's distro, so init -> start -> rm -> init
// of the same name works, and never a distro of that name that Skiff did not create.
func TestMachineRemoval(t *testing.T) {
	s := newSim(t, "Ubuntu")
	b, _ := testBackend(s)
	vmmtest.Removal(t, vmmtest.RemovalHarness{
		Backend: b,
		Config: func(t *testing.T, base vmm.Config) vmm.Config {
			cfg := testConfig(t)
			cfg.Name, cfg.Dir, cfg.RunDir = base.Name, base.Dir, base.RunDir
			return cfg
		},
		Exists: func(name string) bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return slices.Contains(s.distros, DistroName(name))
		},
		Foreign: func(name string) {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.distros = append(s.distros, DistroName(name))
		},
	})
}

// machine init installs WSL's root with the image for this backend, and an image without
// one fails there in one line.
func TestImageCheck(t *testing.T) {
	b, _ := testBackend(newSim(t))
	if got := b.ImageRoles(); !slices.Equal(got, []string{images.RoleWSLRootfs}) {
		t.Fatalf("image roles %q", got)
	}
	dir := t.TempDir()
	err := b.CheckImageDir(dir)
	if err == nil || !strings.Contains(err.Error(), RootfsName) || !strings.Contains(err.Error(), "make image") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("an image without %s: %v", RootfsName, err)
	}
	os.WriteFile(filepath.Join(dir, RootfsName), nil, 0o644)
	if err := b.CheckImageDir(dir); err != nil {
		t.Fatal(err)
	}
}

// On WSL's own network the guest cannot reach the user-mode network's gateway: it opens
// its streams to the host (readiness, shares) on hvsock, whose service is registered and
// which the machine listens on. With the user-mode network it needs neither.
func TestHostStreamsOverHvsockOnWSLNetwork(t *testing.T) {
	if p := (&Backend{Options: Options{Network: NetworkUser}}).HostStreamPort(); p != 0 {
		t.Fatalf("--network user: host stream port %d, want 0 (the gateway)", p)
	}
	b := &Backend{} // --network wsl is the default
	if p := b.HostStreamPort(); p != DefaultHostPort {
		t.Fatalf("--network wsl: host stream port %d, want %d", p, DefaultHostPort)
	}
	if !slices.ContainsFunc(b.Services(), func(s winexec.Service) bool { return s.Port == DefaultHostPort }) {
		t.Fatalf("--network wsl registers no hvsock service for port %d: %v", DefaultHostPort, b.Services())
	}
	h := &fakeHvsock{}
	m := &machine{b: &Backend{Hvsock: h}}
	ln, err := m.ListenGuest(DefaultHostPort)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
}

// --network user cannot work under WSL 2 yet (one network namespace for every distro): a
// start says so, before it imports anything.
func TestUserNetworkNotSupportedYet(t *testing.T) {
	s := newSim(t)
	b, _ := testBackend(s)
	b.Options.Network = NetworkUser
	_, err := b.Start(context.Background(), testConfig(t))
	wantErr(t, err, vmm.ErrNotSupported, "--network wsl")
	if calls := s.Calls(); len(calls) != 0 {
		t.Fatalf("a refused start ran %q", calls)
	}
}
