package fsevents

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// execWatch tells when a program started in the guest, from the kernel's process
// connector: the only times new mounts and new watchers can appear that the scans must
// find. A socket filter keeps all but exec news in the kernel, so a busy build wakes the
// agent only as often as the loop below reads. Unlike a tracepoint it patches no kernel
// text at run time, which under emulation (TCG) has panicked guests.
type execWatch struct {
	c    chan struct{}
	f    *os.File
	once sync.Once
}

// Process connector constants (include/uapi/linux/connector.h, cn_proc.h).
const (
	cnIdxProc         = 1
	cnValProc         = 1
	procCnMcastListen = 1
	procEventExec     = 2
	// The event's "what" sits after the netlink header (16 bytes) and cn_msg (20).
	procWhatOffset = unix.SizeofNlMsghdr + 20
)

// newExecWatch subscribes to exec news. It fails without root or CONFIG_PROC_EVENTS; the
// caller then scans on its timers alone.
func newExecWatch() (*execWatch, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_CONNECTOR)
	if err != nil {
		return nil, fmt.Errorf("exec watch: %w", err)
	}
	fail := func(what string, err error) (*execWatch, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("exec watch: %s: %w", what, err)
	}
	// Classic BPF loads words in network order: the host-order 2 of "what" reads as
	// its byte swap.
	what := binary.BigEndian.Uint32(binary.NativeEndian.AppendUint32(nil, procEventExec))
	filter := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: procWhatOffset},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: what},
		{Code: unix.BPF_RET | unix.BPF_K, K: 0xffff},
		{Code: unix.BPF_RET | unix.BPF_K, K: 0},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		return fail("filter", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: cnIdxProc}); err != nil {
		return fail("bind", err)
	}
	msg := make([]byte, 0, procWhatOffset+4)
	msg = binary.NativeEndian.AppendUint32(msg, procWhatOffset+4) // nlmsg_len
	msg = binary.NativeEndian.AppendUint16(msg, unix.NLMSG_DONE)  // nlmsg_type
	msg = binary.NativeEndian.AppendUint16(msg, 0)                // flags
	msg = binary.NativeEndian.AppendUint32(msg, 0)                // seq
	msg = binary.NativeEndian.AppendUint32(msg, uint32(os.Getpid()))
	msg = binary.NativeEndian.AppendUint32(msg, cnIdxProc)
	msg = binary.NativeEndian.AppendUint32(msg, cnValProc)
	msg = binary.NativeEndian.AppendUint32(msg, 0) // seq
	msg = binary.NativeEndian.AppendUint32(msg, 0) // ack
	msg = binary.NativeEndian.AppendUint16(msg, 4) // len
	msg = binary.NativeEndian.AppendUint16(msg, 0) // flags
	msg = binary.NativeEndian.AppendUint32(msg, procCnMcastListen)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fail("listen", err)
	}
	w := &execWatch{c: make(chan struct{}, 1), f: os.NewFile(uintptr(fd), "proc-connector")}
	go w.run()
	return w, nil
}

// C receives a value after one or more programs started.
func (w *execWatch) C() <-chan struct{} { return w.c }

// Close unsubscribes.
func (w *execWatch) Close() { w.once.Do(func() { w.f.Close() }) }

func (w *execWatch) run() {
	buf := make([]byte, 4096)
	for {
		// ENOBUFS (news dropped while the agent was slow) says the same as news.
		if _, err := w.f.Read(buf); err != nil && !errors.Is(err, unix.ENOBUFS) {
			return
		}
		select {
		case w.c <- struct{}{}:
		default: // one pending already says it
		}
	}
}
