package guestinit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kernel switches some features on and off by rewriting its own code (static keys),
// and a first container flips several of them: the first non-root memory cgroup, and the
// device-filter BPF program the OCI runtime (crun, as runc did) attaches to every
// container's cgroup and that goes when it ends (seen: "Oops: int3" in __alloc_pages as
// runc made the first container's cgroup).
// Under QEMU's multi-threaded TCG a CPU now and then runs a stale translation of the code
// being rewritten and the kernel dies (see vmm.BootPanic). During boot the host agent boots
// again; a running machine just dies. So the boot flips those switches for good, in a
// cgroup kept for the purpose, and a container's start and end only count up and down.
// It does so first thing in stage 1, when no other CPU is running kernel code that a
// rewrite could race with: done beside the engine's start instead, the rewrite of
// kmalloc's memory-cgroup check killed a boot in a modprobe running at the same time.

// KeysCgroup holds the cgroup settings that keep the kernel's runtime switches on.
const KeysCgroup = "/sys/fs/cgroup/skiff-keys"

// pinKeysInStage1 pins the switches before stage 1 starts anything else. The cgroup
// hierarchy outlives the mount, which stage 2 or systemd makes again with its own options.
func pinKeysInStage1() {
	if err := mountKernelFS([]kernelMount{cgroupFS}); err != nil {
		logf("%s: %v", keysUnpinned, err)
		return
	}
	defer unix.Unmount(cgroupFS.dst, 0)
	pinKeys()
}

// pinKeys pins the switches unless an earlier stage did.
func pinKeys() {
	if _, err := os.Stat(KeysCgroup); err == nil {
		return
	}
	if err := PinRuntimeKeys(); err != nil {
		logf("%s: %v", keysUnpinned, err)
		return
	}
	Trace("runtime kernel switches pinned")
}

// keysUnpinned starts the log line of a failed pin (TestMachineHealth looks for it).
const keysUnpinned = "kernel switches a first container flips stay off until then"

// PinRuntimeKeys makes the kernel code rewrites a first container would cause happen now.
func PinRuntimeKeys() error {
	// The runtime enables every controller for a container's parent (cpuset and memory
	// each flip a switch when a cgroup first has them). One at a time, so that one the
	// kernel will not enable does not keep the others off.
	all, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
	if err != nil {
		return err
	}
	for _, c := range strings.Fields(string(all)) {
		os.WriteFile("/sys/fs/cgroup/cgroup.subtree_control", []byte("+"+c), 0o644)
	}
	if err := os.Mkdir(KeysCgroup, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	cg, err := unix.Open(KeysCgroup, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(cg)
	prog, err := loadAllowAllDeviceProg()
	if err != nil {
		return fmt.Errorf("device filter program: %w", err)
	}
	defer unix.Close(prog)
	// Attached stays attached after the descriptor closes, for as long as the cgroup is.
	var attr [20]byte
	binary.NativeEndian.PutUint32(attr[0:], uint32(cg))
	binary.NativeEndian.PutUint32(attr[4:], uint32(prog))
	binary.NativeEndian.PutUint32(attr[8:], unix.BPF_CGROUP_DEVICE)
	binary.NativeEndian.PutUint32(attr[12:], unix.BPF_F_ALLOW_MULTI)
	if _, err := bpf(unix.BPF_PROG_ATTACH, attr[:]); err != nil {
		return fmt.Errorf("attach device filter: %w", err)
	}
	return nil
}

// loadAllowAllDeviceProg loads "return 1", a device filter that allows everything (the
// cgroup it is attached to never holds a process).
func loadAllowAllDeviceProg() (int, error) {
	insns := []uint64{
		insn(0xb7, 1), // BPF_ALU64|BPF_MOV|BPF_K: r0 = 1
		insn(0x95, 0), // BPF_JMP|BPF_EXIT
	}
	license := []byte("GPL\x00")
	var attr [48]byte
	binary.NativeEndian.PutUint32(attr[0:], unix.BPF_PROG_TYPE_CGROUP_DEVICE)
	binary.NativeEndian.PutUint32(attr[4:], uint32(len(insns)))
	binary.NativeEndian.PutUint64(attr[8:], uint64(uintptr(unsafe.Pointer(&insns[0]))))
	binary.NativeEndian.PutUint64(attr[16:], uint64(uintptr(unsafe.Pointer(&license[0]))))
	// The verifier gives up with EAGAIN when the caller has a signal pending, and Go's
	// runtime signals its threads to preempt them; a retry is what libbpf does too.
	fd, err := bpf(unix.BPF_PROG_LOAD, attr[:])
	for try := 1; err == unix.EAGAIN && try < 10; try++ {
		fd, err = bpf(unix.BPF_PROG_LOAD, attr[:])
	}
	runtime.KeepAlive(insns)
	runtime.KeepAlive(license)
	return int(fd), err
}

// insn encodes one BPF instruction on register 0: code, registers, offset, immediate.
func insn(code uint8, imm int32) uint64 {
	var b [8]byte
	b[0] = code
	binary.NativeEndian.PutUint32(b[4:], uint32(imm))
	return binary.NativeEndian.Uint64(b[:])
}

func bpf(cmd int, attr []byte) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
	if errno != 0 {
		return 0, errno
	}
	return r, nil
}
