package hostports

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// WatchEngine keeps the engine's published ports in step with its container events until
// ctx ends. dial opens a stream to the engine API (Docker or Podman's compatible API).
// The socket tables already catch most ports; the engine adds what they cannot know:
// the address asked for in `-p ADDR:P:C`, and the container to dial directly.
func (m *Manager) WatchEngine(ctx context.Context, dial func(context.Context) (net.Conn, error)) {
	// Every connection comes from dial; the client's default host only sets its scheme.
	api, err := client.New(client.WithDialContext(func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) }))
	if err != nil {
		m.Logf("ports: engine client: %v", err)
		return
	}
	defer api.Close()
	w := &engineWatch{api: api, m: m, known: map[string][]Published{}}
	for ctx.Err() == nil {
		if err := w.follow(ctx); err != nil && ctx.Err() == nil {
			m.Logf("ports: engine events: %v", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

type engineWatch struct {
	api   *client.Client
	m     *Manager
	known map[string][]Published // by container ID, from inspect
	// last is what the manager was last given, once reported.
	last     []Published
	reported bool
}

// quietActions are frequent container events that never change what is published.
var quietActions = []string{"exec_", "health_status", "attach", "resize", "top", "archive-path", "extract-to-dir", "export", "commit", "copy"}

func quiet(action string) bool {
	for _, q := range quietActions {
		if strings.HasPrefix(action, q) {
			return true
		}
	}
	return false
}

// follow subscribes to container events, then lists what runs (so nothing that starts in
// between is missed), and refreshes on every event that can change the published set.
func (w *engineWatch) follow(ctx context.Context) error {
	// Ending ctx on return also ends the client's reader of the stream.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Events returns once the engine has answered (a failure then waits on Err), so the
	// stream is open before the list.
	evs := w.api.Events(ctx, client.EventsListOptions{Filters: make(client.Filters).Add("type", "container")})
	// After a reconnect nothing cached can be trusted: containers may have restarted.
	clear(w.known)
	if err := w.refresh(ctx); err != nil {
		return err
	}
	for {
		select {
		case err := <-evs.Err:
			return err
		case ev := <-evs.Messages:
			// Any other event may be a start, stop or removal (Docker and Podman name them
			// differently); a refresh only inspects containers not seen yet, so it is cheap.
			if quiet(string(ev.Action)) {
				continue
			}
			delete(w.known, ev.Actor.ID)
			if err := w.refresh(ctx); err != nil {
				return err
			}
		}
	}
}

// refresh lists running containers, inspects those not seen yet, and hands the union of
// their published ports to the manager.
func (w *engineWatch) refresh(ctx context.Context) error {
	list, err := w.api.ContainerList(ctx, client.ContainerListOptions{})
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	running := map[string]bool{}
	for _, c := range list.Items {
		running[c.ID] = true
		if _, ok := w.known[c.ID]; ok {
			continue
		}
		if !slices.ContainsFunc(c.Ports, func(p container.PortSummary) bool { return p.PublicPort != 0 }) {
			w.known[c.ID] = nil
			continue
		}
		insp, err := w.api.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{})
		if err != nil {
			// Gone between list and inspect: the destroy event will follow.
			w.m.Logf("ports: inspect %.12s: %v", c.ID, err)
			continue
		}
		w.known[c.ID] = published(insp.Container)
	}
	var all []Published
	for id, ps := range w.known {
		if !running[id] {
			delete(w.known, id)
			continue
		}
		all = append(all, ps...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Target < all[j].Target })
	if w.reported && slices.Equal(all, w.last) {
		return nil // exec, restart of an unpublished container...: nothing to redo
	}
	w.last, w.reported = all, true
	w.m.UpdatePublished(ctx, all)
	return nil
}

// containerIP is the address the guest can reach the container at, "" when it has none
// (then the guest's own published port, through the engine's proxy, is dialed).
func containerIP(c container.InspectResponse) string {
	if c.NetworkSettings == nil {
		return ""
	}
	names := make([]string, 0, len(c.NetworkSettings.Networks))
	for n := range c.NetworkSettings.Networks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if ep := c.NetworkSettings.Networks[n]; ep != nil && ep.IPAddress.IsValid() {
			return ep.IPAddress.String()
		}
	}
	return ""
}

// published turns a container's port maps into one Published per protocol and host port.
// Several guest bindings of one port (0.0.0.0 and :: for `-p P:C`) become one; the host
// address is the explicit one from the publish spec, if any.
func published(c container.InspectResponse) []Published {
	if c.NetworkSettings == nil {
		return nil
	}
	var asked network.PortMap // as asked for: `-p [ADDR:]P:C`
	if c.HostConfig != nil {
		asked = c.HostConfig.PortBindings
	}
	ip := containerIP(c)
	seen := map[string]int{}
	var out []Published
	// Bound in the guest, ephemeral ports resolved; in a stable order.
	ports := slices.SortedFunc(maps.Keys(c.NetworkSettings.Ports), func(a, b network.Port) int {
		return strings.Compare(a.String(), b.String())
	})
	for _, port := range ports {
		proto := string(port.Proto())
		if proto != "tcp" && proto != "udp" {
			continue // sctp has no host end here
		}
		for _, b := range c.NetworkSettings.Ports[port] {
			hp, err := strconv.Atoi(b.HostPort)
			if err != nil || hp == 0 {
				continue
			}
			target := net.JoinHostPort(ip, port.Port())
			if ip == "" {
				target = net.JoinHostPort("127.0.0.1", b.HostPort)
			}
			p := Published{Proto: proto, HostIP: requestedIP(asked[port], b.HostPort), HostPort: hp, Target: target}
			k := proto + "/" + b.HostPort
			if i, ok := seen[k]; ok {
				if wider(p.HostIP, out[i].HostIP) {
					out[i].HostIP = p.HostIP
				}
				continue
			}
			seen[k] = len(out)
			out = append(out, p)
		}
	}
	return out
}

// requestedIP is the address the publish spec named for a host port: a binding with that
// port, or one with none (the engine picked it).
func requestedIP(asked []network.PortBinding, hostPort string) string {
	for _, b := range asked {
		if b.HostPort == hostPort {
			return addrText(b.HostIP)
		}
	}
	for _, b := range asked {
		if b.HostPort == "" || b.HostPort == "0" {
			return addrText(b.HostIP)
		}
	}
	return ""
}

// addrText is a as text, "" when none was named.
func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// wider reports whether host address a reaches more than b: a wildcard beats a specific
// address, which beats none named.
func wider(a, b string) bool {
	rank := func(s string) int {
		ip := net.ParseIP(s)
		switch {
		case ip != nil && ip.IsUnspecified():
			return 2
		case s != "":
			return 1
		}
		return 0
	}
	return rank(a) > rank(b)
}
