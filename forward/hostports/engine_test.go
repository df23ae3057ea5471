package hostports

import (
	"context"
	"encoding/json"
	"net"
	"reflect"
	"strconv"
	"testing"

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
	var c inspect
	if err := json.Unmarshal([]byte(inspectJSON), &c); err != nil {
		t.Fatal(err)
	}
	got := c.published()
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
	if p := c.published()[0]; p.Target != "127.0.0.1:32768" {
		t.Fatalf("no container IP: target %s", p.Target)
	}
}

func TestRequestedIPWidest(t *testing.T) {
	// `-p 127.0.0.1:P:80 -p 0.0.0.0:P:80` on one host port: the wildcard wins.
	c := inspect{}
	c.HostConfig.PortBindings = map[string][]binding{"80/tcp": {{HostIP: "127.0.0.1", HostPort: "8080"}, {HostIP: "0.0.0.0", HostPort: "8081"}}}
	c.NetworkSettings.Ports = map[string][]binding{"80/tcp": {{HostIP: "127.0.0.1", HostPort: "8080"}, {HostIP: "0.0.0.0", HostPort: "8081"}}}
	got := c.published()
	if len(got) != 2 || got[0].HostIP != "127.0.0.1" || got[1].HostIP != "0.0.0.0" {
		t.Fatalf("got %+v", got)
	}
	if !wider("0.0.0.0", "127.0.0.1") || !wider("::", "") || wider("", "127.0.0.1") {
		t.Fatal("wider ranks wrong")
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
