package forward

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TraceWatch tells when any process in the system passed one of some kernel tracepoints
// (a program started, an inotify watch added), so that what they change is read then
// instead of on a timer. A BPF program on each tracepoint notes it in a ring buffer the
// runtime polls.
type TraceWatch struct{ *noteRing }

// tracefsDir is where the kernel's tracing file system is mounted, if anywhere.
const tracefsDir = "/sys/kernel/tracing"

// NewTraceWatch attaches to each tracepoint, named as "group/event"
// (syscalls/sys_enter_inotify_add_watch). It fails where the kernel lacks BPF, tracefs or
// the tracepoint, and the caller then looks on a timer.
func NewTraceWatch(tracepoints ...string) (*TraceWatch, error) {
	ids := make([]int, len(tracepoints))
	for i, tp := range tracepoints {
		id, err := tracepointID(tp)
		if err != nil {
			return nil, fmt.Errorf("trace watch: %w", err)
		}
		ids[i] = id
	}
	r, err := newNoteRing("trace watch")
	if err != nil {
		return nil, err
	}
	// r0 = 0 after the note: a tracepoint program's result is whether perf records the
	// event too, and nobody reads it.
	prog, err := bpfLoad(unix.BPF_PROG_TYPE_TRACEPOINT, 0, append(notify(r.mapFD), ins(opMovImm, 0, 0, 0, 0), ins(opExit, 0, 0, 0, 0)))
	if err != nil {
		return nil, r.fail("load program", err)
	}
	defer unix.Close(prog)
	for i, id := range ids {
		// One perf event on one CPU is enough: the program is the tracepoint's, and runs on
		// every CPU that passes it.
		attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_TRACEPOINT, Config: uint64(id), Sample: 1, Wakeup: 1}
		attr.Size = uint32(unsafe.Sizeof(attr))
		pfd, err := unix.PerfEventOpen(&attr, -1, 0, -1, unix.PERF_FLAG_FD_CLOEXEC)
		if err != nil {
			return nil, r.fail("open "+tracepoints[i], err)
		}
		r.holds = append(r.holds, pfd)
		if err := unix.IoctlSetInt(pfd, unix.PERF_EVENT_IOC_SET_BPF, prog); err != nil {
			return nil, r.fail("attach "+tracepoints[i], err)
		}
		if err := unix.IoctlSetInt(pfd, unix.PERF_EVENT_IOC_ENABLE, 0); err != nil {
			return nil, r.fail("enable "+tracepoints[i], err)
		}
	}
	if err := r.start(); err != nil {
		return nil, err
	}
	return &TraceWatch{r}, nil
}

// tracepointID reads a tracepoint's id from tracefs, mounting tracefs where the kernel
// puts it when nobody has (the guest's init mounts only what it needs itself).
func tracepointID(tp string) (int, error) {
	if !filepath.IsLocal(tp) || strings.Count(tp, "/") != 1 {
		return 0, fmt.Errorf("tracepoint %q: want group/event", tp)
	}
	file := filepath.Join(tracefsDir, "events", tp, "id")
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(filepath.Join(tracefsDir, "events")); errors.Is(serr, fs.ErrNotExist) {
			if merr := unix.Mount("tracefs", tracefsDir, "tracefs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); merr != nil {
				return 0, fmt.Errorf("mount tracefs: %w", merr)
			}
			b, err = os.ReadFile(file)
		}
	}
	if err != nil {
		return 0, fmt.Errorf("tracepoint %s: %w", tp, err)
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
