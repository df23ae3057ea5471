package guest

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-dev/skiff/forward"
)

// How often the guest reads its memory while nothing is pressing: rarely when plenty is
// free, once a second when little is (a workload growing towards the balloon). Pressure
// itself is not polled: the kernel's PSI trigger wakes the agent.
const (
	memEveryCalm  = 5 * time.Second
	memEveryTight = time.Second
)

// memPSITrigger fires when tasks stall on memory for 100 ms within a second: before the
// OOM killer, which acts only once reclaim has failed for much longer.
const memPSITrigger = "some 100000 1000000"

// memory streams MemoryReports: one at once, then on a change of at least memStep, and
// at once on pressure.
func (a *Agent) memory(ctx context.Context, _ string, conn net.Conn) {
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Notice the host going away even while nothing changes.
	go func() {
		conn.Read(make([]byte, 1))
		cancel()
	}()
	pressure := make(chan struct{}, 1)
	if stop, err := watchPressure(pressure); err != nil {
		a.Logf("memory: no PSI trigger (%v); pressure is seen only when read", err)
	} else {
		defer stop()
	}
	enc := json.NewEncoder(conn)
	var last forward.MemoryReport
	first := true
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		pressed := false
		select {
		case <-ctx.Done():
			return
		case <-pressure:
			pressed = true
		case <-t.C:
		}
		r, err := readMemory()
		if err != nil {
			a.Logf("memory: %v", err)
			return
		}
		r.Pressure = pressed
		if first || pressed || memMoved(last, r) {
			if enc.Encode(r) != nil {
				return
			}
			last, first = r, false
		}
		every := memEveryCalm
		if r.AvailableKiB < r.TotalKiB/4 {
			every = memEveryTight
		}
		t.Reset(every)
	}
}

// memMoved says whether r differs from what the host last heard enough to act on: 32 MiB
// or 2% of the guest's memory, whichever is more.
func memMoved(last, r forward.MemoryReport) bool {
	step := max(32<<10, r.TotalKiB/50)
	return abs(r.AvailableKiB-last.AvailableKiB) >= step || abs(r.TotalKiB-last.TotalKiB) >= step
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

// readMemory reads MemTotal and MemAvailable from /proc/meminfo and PSI's avg10.
func readMemory() (forward.MemoryReport, error) {
	r := forward.MemoryReport{Some10: -1}
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return r, err
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		f := bytes.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(string(f[1]), 10, 64)
		switch string(f[0]) {
		case "MemTotal:":
			r.TotalKiB = v
		case "MemAvailable:":
			r.AvailableKiB = v
		}
	}
	if p, err := os.ReadFile("/proc/pressure/memory"); err == nil {
		r.Some10 = parseSome10(p)
	}
	return r, nil
}

// parseSome10 is avg10 of PSI's "some" line: "some avg10=1.23 avg60=... total=...".
func parseSome10(p []byte) float64 {
	line, _, _ := bytes.Cut(p, []byte("\n"))
	for _, f := range bytes.Fields(line) {
		if v, ok := bytes.CutPrefix(f, []byte("avg10=")); ok {
			n, err := strconv.ParseFloat(string(v), 64)
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// watchPressure arms a PSI trigger on memory and signals fired on each event until stop.
// The trigger is the kernel's: nothing here wakes up while the guest is calm.
func watchPressure(fired chan<- struct{}) (stop func(), err error) {
	fd, err := unix.Open("/proc/pressure/memory", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if _, err := unix.Write(fd, append([]byte(memPSITrigger), 0)); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// A pipe wakes the poll for stop: closing fd under a blocked poll would not.
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		unix.Close(fd)
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer unix.Close(fd)
		defer unix.Close(p[0])
		for {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLPRI}, {Fd: int32(p[0]), Events: unix.POLLIN}}
			if _, err := unix.Poll(fds, -1); err != nil {
				if err == unix.EINTR {
					continue
				}
				return
			}
			if fds[1].Revents != 0 || fds[0].Revents&(unix.POLLERR|unix.POLLNVAL) != 0 {
				return
			}
			if fds[0].Revents&unix.POLLPRI != 0 {
				select {
				case fired <- struct{}{}:
				default: // one pending event says it all
				}
			}
		}
	}()
	return func() {
		unix.Write(p[1], []byte{0})
		unix.Close(p[1])
		<-done
	}, nil
}
