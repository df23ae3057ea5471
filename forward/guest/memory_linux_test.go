package guest

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/forward"
)

// The stream's first report is this kernel's memory, at once.
func TestMemoryStream(t *testing.T) {
	a := &Agent{Logf: t.Logf}
	host, guest := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.memory(ctx, forward.ServiceMemory, guest); close(done) }()
	host.SetReadDeadline(time.Now().Add(5 * time.Second))
	var r forward.MemoryReport
	line, err := bufio.NewReader(host).ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(line, &r); err != nil {
		t.Fatal(err)
	}
	if r.TotalKiB <= 0 || r.AvailableKiB <= 0 || r.AvailableKiB > r.TotalKiB || r.UsedKiB() <= 0 {
		t.Fatalf("report %+v", r)
	}
	// The host going away ends the stream, as does ctx.
	host.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream outlived its host")
	}
	cancel()
}

func TestParseSome10(t *testing.T) {
	if v := parseSome10([]byte("some avg10=12.50 avg60=1.00 avg300=0.00 total=123\nfull avg10=3.00 avg60=0.00 avg300=0.00 total=1\n")); v != 12.5 {
		t.Fatalf("some10 = %v", v)
	}
	if v := parseSome10([]byte("garbage")); v != -1 {
		t.Fatalf("garbage gave %v", v)
	}
}

func TestMemMoved(t *testing.T) {
	base := forward.MemoryReport{TotalKiB: 4 << 20, AvailableKiB: 2 << 20} // 4 GiB, 2 free
	small := base
	small.AvailableKiB -= 40 << 10 // 40 MiB: under 2% of 4 GiB
	if memMoved(base, small) {
		t.Error("40 MiB of 4 GiB counted as a move")
	}
	big := base
	big.AvailableKiB -= 100 << 10
	if !memMoved(base, big) {
		t.Error("100 MiB of 4 GiB not counted")
	}
	shrunk := base
	shrunk.TotalKiB -= 512 << 10 // a balloon took 512 MiB
	if !memMoved(base, shrunk) {
		t.Error("a balloon's move not counted")
	}
}

// The PSI trigger arms and stops cleanly (where the kernel has PSI).
func TestWatchPressureStops(t *testing.T) {
	fired := make(chan struct{}, 1)
	stop, err := watchPressure(fired)
	if err != nil {
		t.Skipf("no PSI trigger on this kernel: %v", err)
	}
	done := make(chan struct{})
	go func() { stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("stop did not end the watcher")
	}
}
