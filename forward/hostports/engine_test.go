package hostports

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/skiff-dev/skiff/forward"
)

// inspectJSON is the shape Docker's container inspect has for
// `-p 0.0.0.0:8080:80 -p 9000:9000/udp -p 127.0.0.1::443 --expose 5000 -p 7000:7000/sctp`.
const inspectJSON = `{
 "HostConfig": {"PortBindings": {
  "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}],
  "9000/udp": [{"HostIp": "", "HostPort": "9000"}],
  "443/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
  "7000/sctp": [{"HostIp": "", "HostPort": "7000"}]}},
 "NetworkSettings": {
  "IPAddress": "",
  "Ports": {
   "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}],
   "9000/udp": [{"HostIp": "0.0.0.0", "HostPort": "9000"}, {"HostIp": "::", "HostPort": "9000"}],
   "443/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32768"}],
   "5000/tcp": null,
   "7000/sctp": [{"HostIp": "0.0.0.0", "HostPort": "7000"}]},
  "Networks": {"zeta": {"IPAddress": "10.9.0.5"}, "app": {"IPAddress": "172.18.0.4"}}}
}`

func TestInspectPublished(t *testing.T) {
	var c container.InspectResponse
	if err := json.Unmarshal([]byte(inspectJSON), &c); err != nil {
		t.Fatal(err)
	}
	got := published(c)
	want := []Published{
		{Proto: "tcp", HostIP: "127.0.0.1", HostPort: 32768, Target: "172.18.0.4:443"},
		{Proto: "tcp", HostIP: "0.0.0.0", HostPort: 8080, Target: "172.18.0.4:80"},
		{Proto: "udp", HostIP: "", HostPort: 9000, Target: "172.18.0.4:9000"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("published:\n got %+v\nwant %+v", got, want)
	}
	// Without a container address the guest's own published port is dialed.
	c.NetworkSettings.Networks = nil
	if p := published(c)[0]; p.Target != "127.0.0.1:32768" {
		t.Fatalf("no container IP: target %s", p.Target)
	}
}

func TestRequestedIPWidest(t *testing.T) {
	// `-p 127.0.0.1:P:80 -p 0.0.0.0:P:80` on one host port: the wildcard wins.
	bindings := network.PortMap{network.MustParsePort("80/tcp"): {
		{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: "8080"},
		{HostIP: netip.MustParseAddr("0.0.0.0"), HostPort: "8081"}}}
	c := container.InspectResponse{HostConfig: &container.HostConfig{PortBindings: bindings},
		NetworkSettings: &container.NetworkSettings{Ports: bindings}}
	got := published(c)
	if len(got) != 2 || got[0].HostIP != "127.0.0.1" || got[1].HostIP != "0.0.0.0" {
		t.Fatalf("got %+v", got)
	}
	if !wider("0.0.0.0", "127.0.0.1") || !wider("::", "") || wider("", "127.0.0.1") {
		t.Fatal("wider ranks wrong")
	}
	// An engine that says nothing about a container's ports publishes none of them.
	if got := published(container.InspectResponse{}); got != nil {
		t.Fatalf("empty inspect: %+v", got)
	}
}

type refuse struct{}

func (refuse) Dial(context.Context, string) (net.Conn, error) { return nil, net.ErrClosed }

func freeTCPPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// The engine's view of a port wins over the socket table's: its host address and target.
func TestEngineWinsOverSocketTable(t *testing.T) {
	p := freeTCPPort(t)
	m := &Manager{Guest: refuse{}, Logf: t.Logf}
	defer m.Close()
	ctx := context.Background()
	m.Update(ctx, []forward.Listener{{Proto: "tcp", IP: "0.0.0.0", Port: p}})
	st := m.Status()
	if len(st) != 1 || st[0].HostAddr != "127.0.0.1:"+strconv.Itoa(p) || st[0].GuestAddr != "0.0.0.0:"+strconv.Itoa(p) || st[0].Error != "" {
		t.Fatalf("socket table only: %+v", st)
	}
	m.UpdatePublished(ctx, []Published{{Proto: "tcp", HostIP: "0.0.0.0", HostPort: p, Target: "172.17.0.2:80"}})
	st = m.Status()
	if len(st) != 1 || st[0].HostAddr != "0.0.0.0:"+strconv.Itoa(p) || st[0].GuestAddr != "172.17.0.2:80" || st[0].Error != "" {
		t.Fatalf("with the engine's view: %+v", st)
	}
	// IPv4 wildcard only: [::1] is not bound by an explicit 0.0.0.0.
	if c, err := net.Dial("tcp6", net.JoinHostPort("::1", strconv.Itoa(p))); err == nil {
		c.Close()
		t.Fatal("0.0.0.0 was bound dual-stack")
	}
	if c, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(p))); err != nil {
		t.Fatalf("0.0.0.0 not reachable on 127.0.0.1: %v", err)
	} else {
		c.Close()
	}
	// A plain `-p P:80` (no address) gets the default, as does a guest-only address.
	m.UpdatePublished(ctx, []Published{{Proto: "tcp", HostIP: "", HostPort: p, Target: "172.17.0.2:80"}})
	if st = m.Status(); st[0].HostAddr != "127.0.0.1:"+strconv.Itoa(p) {
		t.Fatalf("no address in the spec: %+v", st)
	}
	m.UpdatePublished(ctx, []Published{{Proto: "tcp", HostIP: "192.168.127.2", HostPort: p, Target: "172.17.0.2:80"}})
	if st = m.Status(); st[0].HostAddr != "127.0.0.1:"+strconv.Itoa(p) {
		t.Fatalf("guest address in the spec: %+v", st)
	}
	// The container gone, the socket table's listener remains until it goes too.
	m.UpdatePublished(ctx, nil)
	if st = m.Status(); len(st) != 1 || st[0].GuestAddr != "0.0.0.0:"+strconv.Itoa(p) {
		t.Fatalf("after the engine dropped it: %+v", st)
	}
	m.Update(ctx, nil)
	if st = m.Status(); len(st) != 0 {
		t.Fatalf("after both dropped it: %+v", st)
	}
}

// fakeEngine serves the routes the watcher uses, at the API version it negotiates.
type fakeEngine struct {
	mu         sync.Mutex
	containers map[string]int // running container ID: its published host port
	events     chan string    // container IDs to announce as started
}

func (e *fakeEngine) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_ping", func(w http.ResponseWriter, r *http.Request) { w.Header().Set("Api-Version", "1.47") })
	mux.HandleFunc("GET /v1.47/containers/json", func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		defer e.mu.Unlock()
		list := []map[string]any{}
		for id, p := range e.containers {
			list = append(list, map[string]any{"Id": id, "Ports": []map[string]any{{"PrivatePort": 80, "PublicPort": p, "Type": "tcp"}}})
		}
		json.NewEncoder(w).Encode(list)
	})
	mux.HandleFunc("GET /v1.47/containers/{id}/json", func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		p, ok := e.containers[r.PathValue("id")]
		e.mu.Unlock()
		if !ok {
			http.Error(w, `{"message":"no such container"}`, http.StatusNotFound)
			return
		}
		b := []map[string]string{{"HostIp": "0.0.0.0", "HostPort": strconv.Itoa(p)}}
		json.NewEncoder(w).Encode(map[string]any{"Id": r.PathValue("id"),
			"HostConfig":      map[string]any{"PortBindings": map[string]any{"80/tcp": []map[string]string{{"HostPort": strconv.Itoa(p)}}}},
			"NetworkSettings": map[string]any{"Ports": map[string]any{"80/tcp": b}, "Networks": map[string]any{"bridge": map[string]string{"IPAddress": "172.17.0." + r.PathValue("id")[1:]}}}})
	})
	mux.HandleFunc("GET /v1.47/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.(http.Flusher).Flush()
		for {
			select {
			case id := <-e.events:
				json.NewEncoder(w).Encode(map[string]any{"Type": "container", "Action": "start", "Actor": map[string]string{"ID": id}})
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			}
		}
	})
	return mux
}

// The watcher reaches the engine only through dial, and follows its containers' events.
func TestWatchEngineFollowsEvents(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p1, p2 := freeTCPPort(t), freeTCPPort(t)
	e := &fakeEngine{containers: map[string]int{"c2": p1}, events: make(chan string)}
	srv := &http.Server{Handler: e.handler()}
	go srv.Serve(ln)
	defer srv.Close()

	m := &Manager{Guest: refuse{}, Logf: t.Logf}
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.WatchEngine(ctx, func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", ln.Addr().String())
		})
	}()
	waitStatus := func(what string, want ...string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			var got []string
			for _, f := range m.Status() {
				got = append(got, f.HostAddr+">"+f.GuestAddr)
			}
			if slices.Equal(got, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: forwards %q, want %q", what, got, want)
			}
		}
	}
	fwd := func(p int, ip string) string { return "127.0.0.1:" + strconv.Itoa(p) + ">" + ip + ":80" }
	waitStatus("listed at start", fwd(p1, "172.17.0.2"))

	e.mu.Lock()
	e.containers["c3"] = p2
	e.mu.Unlock()
	e.events <- "c3"
	want := []string{fwd(p1, "172.17.0.2"), fwd(p2, "172.17.0.3")}
	slices.Sort(want)
	waitStatus("started later", want...)

	e.mu.Lock()
	delete(e.containers, "c2")
	e.mu.Unlock()
	e.events <- "c2"
	waitStatus("gone", fwd(p2, "172.17.0.3"))

	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("WatchEngine did not return after its context ended")
	}
}

// An agent source's port (a Kubernetes service) is bound at its own address whatever the
// socket table says, yields to the engine's, and goes when its source drops it.
func TestSourceBetweenSocketTableAndEngine(t *testing.T) {
	p, q := freeTCPPort(t), freeTCPPort(t)
	m := &Manager{Guest: refuse{}, BindAddr: "0.0.0.0", Logf: t.Logf}
	defer m.Close()
	ctx := context.Background()
	m.Update(ctx, []forward.Listener{{Proto: "tcp", IP: "0.0.0.0", Port: p}})
	m.UpdateSource(ctx, "kubernetes", []Published{
		{Proto: "tcp", HostIP: "127.0.0.1", HostPort: p, Target: "192.168.127.2:30080"},
		{Proto: "udp", HostIP: "127.0.0.1", HostPort: q, Target: "192.168.127.2:30053"},
	})
	got := byHost(m.Status())
	if f := got["127.0.0.1:"+strconv.Itoa(p)]; f.GuestAddr != "192.168.127.2:30080" || f.Error != "" || len(got) != 2 {
		t.Fatalf("with the source: %+v", got)
	}
	m.UpdatePublished(ctx, []Published{{Proto: "tcp", HostPort: p, Target: "172.17.0.2:80"}})
	if f := byHost(m.Status())["0.0.0.0:"+strconv.Itoa(p)]; f.GuestAddr != "172.17.0.2:80" {
		t.Fatalf("the engine's port did not win: %+v", m.Status())
	}
	m.UpdatePublished(ctx, nil)
	m.UpdateSource(ctx, "kubernetes", nil)
	if st := m.Status(); len(st) != 1 || st[0].GuestAddr != "0.0.0.0:"+strconv.Itoa(p) {
		t.Fatalf("after the source dropped its ports: %+v", st)
	}
}
