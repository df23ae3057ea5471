package qemu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/skiff-dev/skiff/machine/atomicfile"
)

const probeEnv = "SKIFF_KVM_PROBE"

// The probe runs in a child process (this same binary) because a broken KVM hangs inside
// KVM_RUN, and only a separate process can be killed out of that.
func init() {
	if os.Getenv(probeEnv) == "1" {
		os.Exit(kvmRunOnce())
	}
}

// bootProbeWait is how long a start waits for a probe on a host with no kept verdict.
// KVM that works answers within a second; one that hangs would cost its full timeout,
// so past this the boot goes ahead under TCG and the probe's verdict serves later starts.
const bootProbeWait = 3 * time.Second

// probeNative returns kvm when a guest kernel really starts under it, else tcg and why.
// Whether KVM runs guests is a property of the host, not of one boot: the verdict is kept
// (in the user's cache directory) until the host kernel, the CPU or QEMU changes, so
// only a host's first start probes, and even that one waits at most o.Wait.
func probeNative(bin, kernel string, o ProbeOptions) Verdict {
	key := probeKey(bin)
	if v, ok := loadVerdict(key); ok {
		v.Kept = true
		return v
	}
	if kernel == "" {
		// Only a boot of a real kernel is a verdict; the vCPU probe alone may be fooled.
		accel, why := probeNativeUncached(bin, "")
		return Verdict{Accel: accel, Reason: why}
	}
	run := startProbe(key, bin, kernel)
	var timeout <-chan time.Time
	if o.Wait > 0 {
		t := time.NewTimer(o.Wait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-run.done:
		return run.v
	case <-timeout:
		return Verdict{Accel: "tcg", Pending: true, Reason: fmt.Sprintf("KVM did not prove itself within %s (this host's first start); "+
			"booting under TCG now, and the probe's verdict decides the next starts", o.Wait)}
	}
}

// probeRun is one probe in flight; v is set before done closes.
type probeRun struct {
	done chan struct{}
	v    Verdict
}

// probes are the probes in flight in this process, by key: a caller that asks while one
// runs (the state key of a suspend, a second start) waits for it rather than start another.
var probes = struct {
	sync.Mutex
	m map[string]*probeRun
}{m: map[string]*probeRun{}}

func startProbe(key, bin, kernel string) *probeRun {
	probes.Lock()
	defer probes.Unlock()
	if r, ok := probes.m[key]; ok {
		return r
	}
	r := &probeRun{done: make(chan struct{})}
	probes.m[key] = r
	go func() {
		accel, why := probeNativeUncached(bin, kernel)
		r.v = Verdict{Accel: accel, Reason: why, At: time.Now().UTC()}
		saveVerdict(key, r.v)
		probes.Lock()
		delete(probes.m, key) // the kept verdict answers from now on
		probes.Unlock()
		close(r.done)
	}()
	return r
}

// verdict is a kept probe result, with the host identity it holds for.
type verdict struct {
	Key string `json:"key"`
	Verdict
}

// verdictPath keeps verdicts across reboots, per user.
func verdictPath() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "skiff", fmt.Sprintf("accel-%d.json", os.Getuid()))
}

// probeKey identifies what a verdict depends on: the host kernel (and so its KVM
// module), the CPU as the kernel shows it (model and flags: a change of nested
// virtualization changes them), /dev/kvm itself, and the QEMU binary.
func probeKey(bin string) string {
	var u unix.Utsname
	unix.Uname(&u)
	h := sha256.New()
	fmt.Fprintf(h, "%s|%s|", unix.ByteSliceToString(u.Release[:]), unix.ByteSliceToString(u.Version[:]))
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		seen := map[string]bool{}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			k = strings.TrimSpace(k)
			if ok && (k == "model name" || k == "flags" || k == "Features" || k == "CPU part") && !seen[k] {
				seen[k] = true // the first CPU's: the rest are alike
				fmt.Fprintf(h, "%s=%s|", k, strings.TrimSpace(v))
			}
		}
	}
	var st unix.Stat_t
	if unix.Stat("/dev/kvm", &st) == nil {
		fmt.Fprintf(h, "kvm=%d|", st.Rdev)
	}
	if p, err := exec.LookPath(bin); err == nil {
		bin = p
	}
	if fi, err := os.Stat(bin); err == nil {
		fmt.Fprintf(h, "%s:%d:%d", bin, fi.Size(), fi.ModTime().UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil))
}

// The file keeps a verdict per QEMU binary: a host with two QEMUs (a distribution's and a
// newer one on PATH) would otherwise probe again each time it switched.
const maxVerdicts = 8

func readVerdicts() []verdict {
	var vs []verdict
	b, err := os.ReadFile(verdictPath())
	if err == nil && json.Unmarshal(b, &vs) != nil {
		vs = nil // damaged: probe again
	}
	return vs
}

func loadVerdict(key string) (Verdict, bool) {
	for _, v := range readVerdicts() {
		if v.Key == key {
			return v.Verdict, true
		}
	}
	return Verdict{}, false
}

func saveVerdict(key string, v Verdict) {
	vs := []verdict{{Key: key, Verdict: v}}
	for _, o := range readVerdicts() {
		if o.Key != key && len(vs) < maxVerdicts {
			vs = append(vs, o)
		}
	}
	b, _ := json.Marshal(vs)
	os.MkdirAll(filepath.Dir(verdictPath()), 0o700)
	atomicfile.Write(verdictPath(), b, 0o600)
}

func probeNativeUncached(bin, kernel string) (string, string) {
	if err := ProbeKVM(2 * time.Second); err != nil {
		return "tcg", err.Error()
	}
	if kernel != "" {
		if err := probeKernel(bin, kernel, "host", 10*time.Second); err != nil {
			// Say what a guest does under KVM with a portable CPU model too: on nested
			// hosts it is often the host model that fails and a plain one that hangs.
			if err2 := probeKernel(bin, kernel, "qemu64", 10*time.Second); err2 != nil {
				return "tcg", fmt.Sprintf("%v; with -cpu host: %v", err2, err)
			}
			return "tcg", err.Error()
		}
	}
	return "kvm", "KVM boots the guest kernel"
}

// probeKernel boots the guest kernel under KVM with the CPU model Skiff uses and waits for
// its first console line. A vCPU running three instructions is not proof: on some nested
// hosts QEMU cannot set up the host CPU model, or the kernel hangs in early boot.
func probeKernel(bin, kernel, cpu string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-accel", "kvm", "-cpu", cpu, "-machine", "q35", "-nodefaults",
		"-display", "none", "-m", "256", "-no-reboot", "-kernel", kernel,
		"-append", "console=ttyS0 earlyprintk=ttyS0 panic=-1", "-serial", "stdio")
	var out lineWatcher
	out.want = []byte("Linux version")
	out.found = make(chan struct{})
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = dieWithParent()
	cmd.WaitDelay = time.Second // a child of QEMU's holding the output open must not hold the probe
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("KVM probe: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-out.found:
		cancel()
		<-exited
		return nil
	case <-exited:
		return fmt.Errorf("KVM cannot run guests here: QEMU failed under KVM: %s", lastLines(out.String(), 2))
	case <-ctx.Done():
		<-exited
		return fmt.Errorf("KVM hangs: /dev/kvm opens but the guest kernel printed nothing within %s", timeout)
	}
}

// dieWithParent: a probe left running by a host agent that exits mid-probe (its VM
// stopped within seconds of a first start) must not outlive it, hung in KVM_RUN.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// lineWatcher collects output and signals when a marker appears.
type lineWatcher struct {
	mu    sync.Mutex
	buf   []byte
	want  []byte
	found chan struct{}
	done  bool
}

func (w *lineWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) < 64<<10 {
		w.buf = append(w.buf, p...)
	}
	if !w.done && bytes.Contains(w.buf, w.want) {
		w.done = true
		close(w.found)
	}
	return len(p), nil
}

func (w *lineWatcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}

// ProbeKVM boots a one-instruction guest on /dev/kvm and reports why it cannot be used.
func ProbeKVM(timeout time.Duration) error {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("KVM unavailable: %w", err)
	}
	f.Close()
	if runtime.GOARCH != "amd64" {
		return nil // the instruction probe below is x86 code; trust an openable /dev/kvm
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), probeEnv+"=1")
	cmd.SysProcAttr = dieWithParent()
	err = cmd.Run()
	if ctx.Err() != nil {
		return fmt.Errorf("KVM hangs: /dev/kvm opens but a test guest did not run within %s (nested virtualization without working KVM?)", timeout)
	}
	if err != nil {
		return fmt.Errorf("KVM test guest failed: %v", err)
	}
	return nil
}

const (
	kvmCreateVM         = 0xAE01
	kvmGetVCPUMmapSize  = 0xAE04
	kvmCreateVCPU       = 0xAE41
	kvmSetUserMemRegion = 0x4020AE46
	kvmRun              = 0xAE80
	kvmExitIO           = 2
	kvmExitHLT          = 5
)

func ioctl(fd int, req, arg uintptr) (uintptr, error) {
	r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
	if e != 0 {
		return 0, e
	}
	return r, nil
}

// kvmRunOnce runs "out 0x10, al; hlt" at the x86 reset vector and exits 0 if KVM returns.
func kvmRunOnce() int {
	kvm, err := unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return 2
	}
	vmfd, err := ioctl(kvm, kvmCreateVM, 0)
	if err != nil {
		return 2
	}
	mem, err := unix.Mmap(-1, 0, 0x10000, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		return 2
	}
	copy(mem[0xfff0:], []byte{0xE6, 0x10, 0xF4})
	region := struct {
		slot, flags                uint32
		guestPhys, size, userspace uint64
	}{0, 0, 0xffff0000, 0x10000, uint64(uintptr(unsafe.Pointer(&mem[0])))}
	if _, err := ioctl(int(vmfd), kvmSetUserMemRegion, uintptr(unsafe.Pointer(&region))); err != nil {
		return 2
	}
	vcpu, err := ioctl(int(vmfd), kvmCreateVCPU, 0)
	if err != nil {
		return 2
	}
	size, err := ioctl(kvm, kvmGetVCPUMmapSize, 0)
	if err != nil {
		return 2
	}
	run, err := unix.Mmap(int(vcpu), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return 2
	}
	if _, err := ioctl(int(vcpu), kvmRun, 0); err != nil {
		return 3
	}
	switch binary.LittleEndian.Uint32(run[8:12]) {
	case kvmExitIO, kvmExitHLT:
		return 0
	}
	return 3
}
