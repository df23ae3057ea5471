package forward

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ListenWatch tells when a socket may have started or stopped listening, so that the
// socket tables are read then instead of several times a second: small BPF programs on the
// cgroup2 root note every TCP listen(2) and end of a listener (sock_ops) and every UDP
// bind(2) and release (cgroup sock hooks) in a ring buffer whose descriptor the Go runtime
// polls. An idle guest then wakes for nothing.
type ListenWatch struct {
	c     chan struct{}
	ring  *os.File
	cons  []byte // the consumer position page (read-write)
	prod  []byte // the producer position page and the data (read-only)
	links []int
	once  sync.Once
	done  chan struct{}
}

// BPF helper numbers (include/uapi/linux/bpf.h's __BPF_FUNC_MAPPER order).
const (
	bpfFuncSockOpsCbFlagsSet = 59
	bpfFuncRingbufOutput     = 130
	bpfPseudoMapFD           = 1
	ringSize                 = 4096 // a page: each note is 16 bytes, and only news of one counts
	ipprotoUDP               = 17
)

// NewListenWatch loads and attaches the programs. It fails where the kernel lacks BPF, a
// cgroup2 mount or the hooks (before 5.9), and the caller then reads the tables on a timer.
func NewListenWatch() (*ListenWatch, error) {
	root, err := cgroup2Root()
	if err != nil {
		return nil, err
	}
	cg, err := unix.Open(root, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("listen watch: %w", err)
	}
	defer unix.Close(cg)
	mapFD, err := bpfRingbuf(ringSize)
	if err != nil {
		return nil, fmt.Errorf("listen watch: ring buffer: %w", err)
	}
	w := &ListenWatch{c: make(chan struct{}, 1), done: make(chan struct{})}
	fail := func(what string, err error) (*ListenWatch, error) {
		w.Close()
		if w.ring == nil {
			unix.Close(mapFD)
		}
		return nil, fmt.Errorf("listen watch: %s: %w", what, err)
	}
	page := os.Getpagesize()
	if w.cons, err = unix.Mmap(mapFD, 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return fail("map consumer page", err)
	}
	if w.prod, err = unix.Mmap(mapFD, int64(page), page+2*ringSize, unix.PROT_READ, unix.MAP_SHARED); err != nil {
		return fail("map producer page", err)
	}
	hooks := []struct {
		progType, attach uint32
		insns            []uint64
	}{
		{unix.BPF_PROG_TYPE_SOCK_OPS, unix.BPF_CGROUP_SOCK_OPS, sockOpsProg(mapFD)},
		{unix.BPF_PROG_TYPE_CGROUP_SOCK, unix.BPF_CGROUP_INET4_POST_BIND, udpSockProg(mapFD)},
		{unix.BPF_PROG_TYPE_CGROUP_SOCK, unix.BPF_CGROUP_INET6_POST_BIND, udpSockProg(mapFD)},
		{unix.BPF_PROG_TYPE_CGROUP_SOCK, unix.BPF_CGROUP_INET_SOCK_RELEASE, udpSockProg(mapFD)},
	}
	for _, h := range hooks {
		prog, err := bpfLoad(h.progType, h.attach, h.insns)
		if err != nil {
			return fail(fmt.Sprintf("load program for attach type %d", h.attach), err)
		}
		// A link, not a plain attach: the programs go when this process does.
		link, err := bpfLinkCgroup(prog, cg, h.attach)
		unix.Close(prog)
		if err != nil {
			return fail(fmt.Sprintf("attach type %d", h.attach), err)
		}
		w.links = append(w.links, link)
	}
	// Non-blocking, so that os.NewFile hands the descriptor to the runtime's poller.
	if err := unix.SetNonblock(mapFD, true); err != nil {
		return fail("nonblock", err)
	}
	w.ring = os.NewFile(uintptr(mapFD), "listen-watch-ring")
	rc, err := w.ring.SyscallConn()
	if err != nil {
		return fail("poll", err)
	}
	go w.run(rc)
	return w, nil
}

// C receives a value after one or more listen-related events; it never closes.
func (w *ListenWatch) C() <-chan struct{} { return w.c }

// Close detaches the programs and stops the watch.
func (w *ListenWatch) Close() {
	w.once.Do(func() {
		close(w.done)
		for _, l := range w.links {
			unix.Close(l)
		}
		if w.ring != nil {
			w.ring.Close()
		}
		// The pages stay mapped: run may still read them; they are one page and a few
		// more, and a watch lasts as long as the agent's ports stream.
	})
}

func (w *ListenWatch) run(rc interface {
	Read(func(fd uintptr) bool) error
}) {
	prod := (*uint64)(unsafe.Pointer(&w.prod[0]))
	cons := (*uint64)(unsafe.Pointer(&w.cons[0]))
	for {
		err := rc.Read(func(uintptr) bool {
			p := atomic.LoadUint64(prod)
			if p == atomic.LoadUint64(cons) {
				return false // wait for the descriptor to be readable
			}
			// The notes say nothing but "look": skip them all. A listener is in the
			// tables before its program runs, so a scan after this sees it; the next
			// note wakes the poller because it lands where the consumer now is.
			atomic.StoreUint64(cons, p)
			return true
		})
		if err != nil {
			return
		}
		select {
		case w.c <- struct{}{}:
		case <-w.done:
			return
		default: // one pending already says it
		}
	}
}

// cgroup2Root finds where the unified cgroup hierarchy is mounted.
func cgroup2Root() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("listen watch: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ... mount-point ... - fstype source options
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		f := strings.Fields(pre)
		if ok && len(f) >= 5 && strings.HasPrefix(post, "cgroup2 ") && f[3] == "/" {
			return f[4], nil
		}
	}
	return "", errors.New("listen watch: no cgroup2 mount")
}

// ins encodes one BPF instruction.
func ins(code, dst, src uint8, off int16, imm int32) uint64 {
	var b [8]byte
	b[0] = code
	b[1] = dst | src<<4
	binary.NativeEndian.PutUint16(b[2:], uint16(off))
	binary.NativeEndian.PutUint32(b[4:], uint32(imm))
	return binary.NativeEndian.Uint64(b[:])
}

// BPF opcodes used below.
const (
	opMovImm = 0xb7 // BPF_ALU64|BPF_MOV|BPF_K
	opMovReg = 0xbf // BPF_ALU64|BPF_MOV|BPF_X
	opAddImm = 0x07 // BPF_ALU64|BPF_ADD|BPF_K
	opLdxW   = 0x61 // BPF_LDX|BPF_MEM|BPF_W
	opStDW   = 0x7a // BPF_ST|BPF_MEM|BPF_DW
	opLdDW   = 0x18 // BPF_LD|BPF_IMM|BPF_DW (two slots)
	opJeqImm = 0x15
	opJneImm = 0x55
	opJa     = 0x05
	opCall   = 0x85
	opExit   = 0x95
)

// notify appends "bpf_ringbuf_output(map, &zero, 8, 0)"; it clobbers r1-r5.
func notify(mapFD int) []uint64 {
	return []uint64{
		ins(opStDW, 10, 0, -8, 0),
		ins(opLdDW, 1, bpfPseudoMapFD, 0, int32(mapFD)), 0,
		ins(opMovReg, 2, 10, 0, 0),
		ins(opAddImm, 2, 0, 0, -8),
		ins(opMovImm, 3, 0, 0, 8),
		ins(opMovImm, 4, 0, 0, 0),
		ins(opCall, 0, 0, 0, bpfFuncRingbufOutput),
	}
}

// sockOpsProg notes a TCP socket's listen(2), and asks the kernel to report that socket's
// state changes, so that its leaving LISTEN is noted as well.
//
//	r6 = ctx; r2 = ctx->op
//	if r2 == TCP_LISTEN_CB { bpf_sock_ops_cb_flags_set(ctx, STATE_CB_FLAG); notify }
//	else if r2 == STATE_CB && ctx->args[0] == TCP_LISTEN { notify }
//	return 1
func sockOpsProg(mapFD int) []uint64 {
	n := notify(mapFD)
	p := []uint64{
		ins(opMovReg, 6, 1, 0, 0),
		ins(opLdxW, 2, 6, 0, 0), // op
		ins(opJeqImm, 2, 0, 4, unix.BPF_SOCK_OPS_TCP_LISTEN_CB),
		ins(opJneImm, 2, 0, int16(6+len(n)), unix.BPF_SOCK_OPS_STATE_CB),
		ins(opLdxW, 2, 6, 4, 0), // args[0]: the old state
		ins(opJneImm, 2, 0, int16(4+len(n)), unix.BPF_TCP_LISTEN),
		ins(opJa, 0, 0, 3, 0),
		// listen:
		ins(opMovReg, 1, 6, 0, 0),
		ins(opMovImm, 2, 0, 0, unix.BPF_SOCK_OPS_STATE_CB_FLAG),
		ins(opCall, 0, 0, 0, bpfFuncSockOpsCbFlagsSet),
	}
	p = append(p, n...)
	return append(p, ins(opMovImm, 0, 0, 0, 1), ins(opExit, 0, 0, 0, 0))
}

// udpSockProg notes a UDP socket's bind or release; it always allows (returns 1).
func udpSockProg(mapFD int) []uint64 {
	n := notify(mapFD)
	p := []uint64{
		ins(opLdxW, 2, 1, 12, 0), // struct bpf_sock.protocol
		ins(opJneImm, 2, 0, int16(len(n)), ipprotoUDP),
	}
	p = append(p, n...)
	return append(p, ins(opMovImm, 0, 0, 0, 1), ins(opExit, 0, 0, 0, 0))
}

func bpfSys(cmd int, attr []byte) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
	runtime.KeepAlive(attr)
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

func bpfRingbuf(size uint32) (int, error) {
	var attr [72]byte
	binary.NativeEndian.PutUint32(attr[0:], unix.BPF_MAP_TYPE_RINGBUF)
	binary.NativeEndian.PutUint32(attr[12:], size)
	fd, err := bpfSys(unix.BPF_MAP_CREATE, attr[:])
	if err == nil {
		unix.CloseOnExec(fd)
	}
	return fd, err
}

func bpfLoad(progType, attach uint32, insns []uint64) (int, error) {
	license := []byte("GPL\x00")
	logBuf := make([]byte, 4096)
	var attr [128]byte
	binary.NativeEndian.PutUint32(attr[0:], progType)
	binary.NativeEndian.PutUint32(attr[4:], uint32(len(insns)))
	binary.NativeEndian.PutUint64(attr[8:], uint64(uintptr(unsafe.Pointer(&insns[0]))))
	binary.NativeEndian.PutUint64(attr[16:], uint64(uintptr(unsafe.Pointer(&license[0]))))
	binary.NativeEndian.PutUint32(attr[24:], 1) // log_level: say why on failure
	binary.NativeEndian.PutUint32(attr[28:], uint32(len(logBuf)))
	binary.NativeEndian.PutUint64(attr[32:], uint64(uintptr(unsafe.Pointer(&logBuf[0]))))
	binary.NativeEndian.PutUint32(attr[68:], attach) // expected_attach_type
	// The verifier gives up with EAGAIN when a signal is pending, and Go's runtime signals
	// its threads to preempt them; a retry is what libbpf does too.
	fd, err := bpfSys(unix.BPF_PROG_LOAD, attr[:])
	for try := 1; err == unix.EAGAIN && try < 10; try++ {
		fd, err = bpfSys(unix.BPF_PROG_LOAD, attr[:])
	}
	runtime.KeepAlive(insns)
	runtime.KeepAlive(license)
	if err != nil {
		if msg := strings.TrimSpace(unix.ByteSliceToString(logBuf)); msg != "" {
			return -1, fmt.Errorf("%w (verifier: %s)", err, msg)
		}
		return -1, err
	}
	unix.CloseOnExec(fd)
	return fd, nil
}

func bpfLinkCgroup(prog, cgroup int, attach uint32) (int, error) {
	var attr [64]byte
	binary.NativeEndian.PutUint32(attr[0:], uint32(prog))
	binary.NativeEndian.PutUint32(attr[4:], uint32(cgroup))
	binary.NativeEndian.PutUint32(attr[8:], attach)
	fd, err := bpfSys(unix.BPF_LINK_CREATE, attr[:])
	if err == nil {
		unix.CloseOnExec(fd)
	}
	return fd, err
}
