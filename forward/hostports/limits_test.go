package hostports

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/skiff-dev/skiff/forward"
)

// logLines records what a Manager logs.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logf(f string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(f, a...))
}

func (l *logLines) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			n++
		}
	}
	return n
}

func byHost(st []forward.Forward) map[string]forward.Forward {
	out := map[string]forward.Forward{}
	for _, f := range st {
		out[f.HostAddr] = f
	}
	return out
}

// A listener bound to the guest's loopback stays in the guest, whatever the guest's scan
// reports; the engine may still publish one.
func TestGuestLoopbackListenerNotMirrored(t *testing.T) {
	p1, p2, p3 := freeTCPPort(t), freeTCPPort(t), freeTCPPort(t)
	var log logLines
	m := &Manager{Guest: refuse{}, Logf: log.logf}
	defer m.Close()
	ctx := context.Background()
	ls := []forward.Listener{{Proto: "tcp", IP: "127.0.0.1", Port: p1}, {Proto: "udp", IP: "::1", Port: p2}, {Proto: "tcp", IP: "127.0.0.53", Port: p3}}
	m.Update(ctx, ls)
	if st := m.Status(); len(st) != 0 {
		t.Fatalf("guest loopback listeners mirrored: %+v", st)
	}
	if n := log.count("bound to the guest's loopback"); n != 3 {
		t.Fatalf("%d log lines for 3 refused loopback listeners: %q", n, log.lines)
	}
	m.Update(ctx, ls) // the same refusals again are not logged again
	if n := log.count("bound to the guest's loopback"); n != 3 {
		t.Fatalf("refusals logged again on a rescan: %q", log.lines)
	}
	// `docker run -p 127.0.0.1:P:80` is asked for by the user: forwarded.
	m.UpdatePublished(ctx, []Published{{Proto: "tcp", HostIP: "127.0.0.1", HostPort: p1, Target: "127.0.0.1:" + strconv.Itoa(p1)}})
	if st := m.Status(); len(st) != 1 || st[0].Error != "" {
		t.Fatalf("engine-published port: %+v", st)
	}
}

// Past MaxForwards, forwards are refused with a reason in Status and one log line, the
// engine's ports first; a freed slot goes to a refused one.
func TestForwardLimit(t *testing.T) {
	var ports []int
	for range 4 {
		ports = append(ports, freeTCPPort(t))
	}
	var log logLines
	m := &Manager{Guest: refuse{}, Logf: log.logf, MaxForwards: 2}
	defer m.Close()
	ctx := context.Background()
	var ls []forward.Listener
	for _, p := range ports {
		ls = append(ls, forward.Listener{Proto: "tcp", IP: "0.0.0.0", Port: p})
	}
	// The engine's port wins a slot whatever its number.
	m.UpdatePublished(ctx, []Published{{Proto: "tcp", HostPort: ports[3], Target: "172.17.0.2:80"}})
	m.Update(ctx, ls)
	st := m.Status()
	if len(st) != 4 {
		t.Fatalf("want 4 forwards listed, got %+v", st)
	}
	bound, refused := 0, 0
	for _, f := range st {
		switch {
		case f.Error == "":
			bound++
		case strings.Contains(f.Error, ErrTooManyForwards.Error()):
			refused++
		default:
			t.Fatalf("unexpected error: %+v", f)
		}
	}
	if bound != 2 || refused != 2 {
		t.Fatalf("%d bound, %d refused: %+v", bound, refused, st)
	}
	if f := byHost(st)["127.0.0.1:"+strconv.Itoa(ports[3])]; f.Error != "" {
		t.Fatalf("the engine's port was refused: %+v", st)
	}
	m.Update(ctx, ls)
	if n := log.count("limit of 2 forwards per machine reached"); n != 1 {
		t.Fatalf("%d limit log lines, want 1: %q", n, log.lines)
	}
	// One listener goes: a refused one takes its slot.
	var gone int
	for _, f := range st {
		if f.Error == "" && f.GuestAddr != "172.17.0.2:80" {
			gone, _ = strconv.Atoi(f.HostAddr[strings.LastIndex(f.HostAddr, ":")+1:])
		}
	}
	var rest []forward.Listener
	for _, l := range ls {
		if l.Port != gone {
			rest = append(rest, l)
		}
	}
	m.Update(ctx, rest)
	st = m.Status()
	bound = 0
	for _, f := range st {
		if f.Error == "" {
			bound++
		}
	}
	if len(st) != 3 || bound != 2 {
		t.Fatalf("after a slot came free: %+v", st)
	}
}

// listenHost holds proto/port on ip as another host program would; false when the host
// lacks that address family.
func listenHost(t *testing.T, proto, ip string, port int) bool {
	addr := net.JoinHostPort(ip, strconv.Itoa(port))
	var c interface{ Close() error }
	var err error
	if proto == "tcp" {
		c, err = net.Listen(family("tcp", ip), addr)
	} else {
		c, err = net.ListenPacket(family("udp", ip), addr)
	}
	if err != nil {
		if strings.Contains(ip, ":") {
			return false
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return true
}

// A host port that a host program serves, on any loopback or wildcard address, is not
// taken over, and inspect says why.
func TestHostPortInUseIsNotTaken(t *testing.T) {
	for _, proto := range []string{"tcp", "udp"} {
		for _, ip := range []string{"127.0.0.1", "::1", "0.0.0.0", "::"} {
			t.Run(proto+"/"+ip, func(t *testing.T) {
				port := freeTCPPort(t)
				if !listenHost(t, proto, ip, port) {
					t.Skipf("no %s on this host", ip)
				}
				m := &Manager{Guest: refuse{}, Logf: t.Logf}
				defer m.Close()
				m.Update(context.Background(), []forward.Listener{{Proto: proto, IP: "0.0.0.0", Port: port}})
				st := m.Status()
				want := fmt.Sprintf("host port %d is in use on the host", port)
				if len(st) != 1 || !strings.HasPrefix(st[0].Error, want) {
					t.Fatalf("status %+v, want the error %q", st, want)
				}
			})
		}
	}
}

// Once the host program lets the port go, the next reconcile binds it.
func TestHostPortFreedIsTaken(t *testing.T) {
	port := freeTCPPort(t)
	ln, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	m := &Manager{Guest: refuse{}, Logf: t.Logf}
	defer m.Close()
	ctx := context.Background()
	m.Update(ctx, []forward.Listener{{Proto: "tcp", IP: "0.0.0.0", Port: port}})
	if st := m.Status(); st[0].Error == "" {
		t.Fatalf("bound over a host listener: %+v", st)
	}
	ln.Close()
	m.UpdatePublished(ctx, nil)
	if st := m.Status(); st[0].Error != "" {
		t.Fatalf("not bound once free: %+v", st)
	}
}

// What a suspend saves (Sources, through JSON as the saved state keeps it) binds the same
// host ports in a new Manager, as a warm start's agent does before the guest answers.
func TestSourcesRestoreBindsTheSamePorts(t *testing.T) {
	p1, p2, p3 := freeTCPPort(t), freeTCPPort(t), freeTCPPort(t)
	ctx := context.Background()
	var log logLines
	before := &Manager{Guest: refuse{}, Logf: log.logf}
	before.Update(ctx, []forward.Listener{{Proto: "tcp", IP: "0.0.0.0", Port: p1}})
	before.UpdatePublished(ctx, []Published{{Proto: "tcp", HostPort: p2, Target: "172.17.0.2:80"}})
	before.UpdateSource(ctx, "kube", []Published{{Proto: "tcp", HostIP: "127.0.0.1", HostPort: p3, Target: "10.43.0.1:443"}})
	want := before.Status()
	b, err := json.Marshal(before.Sources())
	if err != nil {
		t.Fatal(err)
	}
	before.Close()

	var saved Sources
	if err := json.Unmarshal(b, &saved); err != nil {
		t.Fatal(err)
	}
	after := &Manager{Guest: refuse{}, Logf: log.logf}
	defer after.Close()
	after.Restore(ctx, saved)
	got := after.Status()
	if len(got) != 3 || !reflect.DeepEqual(got, want) {
		t.Fatalf("restored forwards %+v, want %+v", got, want)
	}
	for _, f := range got {
		if f.Error != "" {
			t.Fatalf("%s not bound: %s", f.HostAddr, f.Error)
		}
		c, err := net.Dial("tcp", f.HostAddr)
		if err != nil {
			t.Fatalf("%s does not listen: %v", f.HostAddr, err)
		}
		c.Close()
	}
	// The guest's next word replaces the saved one: a listener gone since goes.
	after.Update(ctx, nil)
	if st := byHost(after.Status()); len(st) != 2 || st[net.JoinHostPort("127.0.0.1", strconv.Itoa(p1))].HostAddr != "" {
		t.Fatalf("after the guest's update: %+v", after.Status())
	}
}
