package hostports

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// WatchEngine keeps the engine's published ports in step with its container events until
// ctx ends. dial opens a stream to the engine API (Docker or Podman's compatible API).
// The socket tables already catch most ports; the engine adds what they cannot know:
// the address asked for in `-p ADDR:P:C`, and the container to dial directly.
func (m *Manager) WatchEngine(ctx context.Context, dial func(context.Context) (net.Conn, error)) {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) }}
	defer tr.CloseIdleConnections()
	w := &engineWatch{c: &http.Client{Transport: tr}, m: m, known: map[string][]Published{}}
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
	c     *http.Client
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
	resp, err := w.open(ctx, "/events?filters="+url.QueryEscape(`{"type":["container"]}`))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// After a reconnect nothing cached can be trusted: containers may have restarted.
	clear(w.known)
	if err := w.refresh(ctx); err != nil {
		return err
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var ev struct {
			Action string
			Actor  struct{ ID string }
		}
		if err := dec.Decode(&ev); err != nil {
			return err
		}
		// Any other event may be a start, stop or removal (Docker and Podman name them
		// differently); a refresh only inspects containers not seen yet, so it is cheap.
		if quiet(ev.Action) {
			continue
		}
		delete(w.known, ev.Actor.ID)
		if err := w.refresh(ctx); err != nil {
			return err
		}
	}
}

// refresh lists running containers, inspects those not seen yet, and hands the union of
// their published ports to the manager.
func (w *engineWatch) refresh(ctx context.Context) error {
	var list []struct {
		ID    string `json:"Id"`
		Ports []struct{ PublicPort int }
	}
	if err := w.get(ctx, "/containers/json", &list); err != nil {
		return err
	}
	running := map[string]bool{}
	for _, c := range list {
		running[c.ID] = true
		if _, ok := w.known[c.ID]; ok {
			continue
		}
		published := false
		for _, p := range c.Ports {
			published = published || p.PublicPort != 0
		}
		if !published {
			w.known[c.ID] = nil
			continue
		}
		var insp inspect
		if err := w.get(ctx, "/containers/"+c.ID+"/json", &insp); err != nil {
			// Gone between list and inspect: the destroy event will follow.
			w.m.Logf("ports: inspect %.12s: %v", c.ID, err)
			continue
		}
		w.known[c.ID] = insp.published()
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

// open GETs path from the engine; any answer but 200 is an error.
func (w *engineWatch) open(ctx context.Context, path string) (*http.Response, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://engine"+path, nil)
	resp, err := w.c.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return resp, nil
}

// get decodes the engine's JSON answer to GET path into v.
func (w *engineWatch) get(ctx context.Context, path string, v any) error {
	resp, err := w.open(ctx, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// binding is one entry of a port map in container inspect.
type binding struct {
	HostIP   string `json:"HostIp"`
	HostPort string
}

// inspect is the part of a container's inspect that says what it publishes.
type inspect struct {
	HostConfig struct {
		PortBindings map[string][]binding // as asked for: `-p [ADDR:]P:C`
	}
	NetworkSettings struct {
		IPAddress string
		Ports     map[string][]binding // as bound in the guest, ephemeral ports resolved
		Networks  map[string]struct{ IPAddress string }
	}
}

// containerIP is the address the guest can reach the container at, "" when it has none
// (then the guest's own published port, through the engine's proxy, is dialed).
func (c inspect) containerIP() string {
	names := make([]string, 0, len(c.NetworkSettings.Networks))
	for n := range c.NetworkSettings.Networks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if ip := c.NetworkSettings.Networks[n].IPAddress; ip != "" {
			return ip
		}
	}
	return c.NetworkSettings.IPAddress
}

// published turns a container's port maps into one Published per protocol and host port.
// Several guest bindings of one port (0.0.0.0 and :: for `-p P:C`) become one; the host
// address is the explicit one from the publish spec, if any.
func (c inspect) published() []Published {
	ip := c.containerIP()
	seen := map[string]int{}
	var out []Published
	keys := make([]string, 0, len(c.NetworkSettings.Ports))
	for k := range c.NetworkSettings.Ports {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		port, proto, _ := strings.Cut(key, "/")
		if proto == "" {
			proto = "tcp"
		}
		if proto != "tcp" && proto != "udp" {
			continue // sctp has no host end here
		}
		for _, b := range c.NetworkSettings.Ports[key] {
			hp, err := strconv.Atoi(b.HostPort)
			if err != nil || hp == 0 {
				continue
			}
			target := net.JoinHostPort(ip, port)
			if ip == "" {
				target = net.JoinHostPort("127.0.0.1", b.HostPort)
			}
			p := Published{Proto: proto, HostIP: requestedIP(c.HostConfig.PortBindings[key], b.HostPort), HostPort: hp, Target: target}
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
func requestedIP(asked []binding, hostPort string) string {
	for _, b := range asked {
		if b.HostPort == hostPort {
			return b.HostIP
		}
	}
	for _, b := range asked {
		if b.HostPort == "" || b.HostPort == "0" {
			return b.HostIP
		}
	}
	return ""
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
