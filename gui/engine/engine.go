// Package engine is a small Docker Engine API client over a unix socket: only what the
// dashboard needs, spoken directly over net/http so the tray carries no docker SDK.
package engine

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// Port is one port of a container as /containers/json reports it.
type Port struct {
	IP          string `json:"IP,omitempty"`
	PrivatePort int    `json:"PrivatePort"`
	PublicPort  int    `json:"PublicPort,omitempty"`
	Type        string `json:"Type"`
}

// Container is one row of /containers/json.
type Container struct {
	ID      string   `json:"Id"`
	Names   []string `json:"Names"`
	Image   string   `json:"Image"`
	State   string   `json:"State"`  // running, exited, created, paused, restarting, dead
	Status  string   `json:"Status"` // human text with the uptime, e.g. "Up 5 minutes"
	Created int64    `json:"Created"`
	Ports   []Port   `json:"Ports"`
}

// Name is the container's name without the leading slash.
func (c Container) Name() string {
	if len(c.Names) == 0 {
		return shortID(c.ID)
	}
	return strings.TrimPrefix(c.Names[0], "/")
}

// Published returns the distinct published ports, sorted, dropping the duplicate
// IPv4/IPv6 entries the engine reports for one binding.
func (c Container) Published() []Port {
	seen := map[string]bool{}
	var out []Port
	for _, p := range c.Ports {
		if p.PublicPort == 0 {
			continue
		}
		k := fmt.Sprintf("%d/%d/%s", p.PublicPort, p.PrivatePort, p.Type)
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, Port{PrivatePort: p.PrivatePort, PublicPort: p.PublicPort, Type: p.Type})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PublicPort < out[j].PublicPort })
	return out
}

// Image is one row of /images/json.
type Image struct {
	ID         string   `json:"Id"`
	RepoTags   []string `json:"RepoTags"`
	Size       int64    `json:"Size"`
	Created    int64    `json:"Created"`
	Containers int64    `json:"Containers"`
}

// Tag is the image's first tag, or its short id when untagged.
func (i Image) Tag() string {
	for _, t := range i.RepoTags {
		if t != "<none>:<none>" {
			return t
		}
	}
	return shortID(i.ID)
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Version is the answer of /version.
type Version struct {
	Version    string `json:"Version"`
	APIVersion string `json:"ApiVersion"`
	Os         string `json:"Os"`
	Arch       string `json:"Arch"`
}

// Event is one message of /events.
type Event struct {
	Type   string `json:"Type"`
	Action string `json:"Action"`
	Actor  struct {
		ID         string            `json:"ID"`
		Attributes map[string]string `json:"Attributes"`
	} `json:"Actor"`
	Time int64 `json:"time"`
}

// Action is something done to a container.
type Action string

const (
	ActionStart   Action = "start"
	ActionStop    Action = "stop"
	ActionRestart Action = "restart"
	ActionRemove  Action = "remove"
)

// LogLine is one line of a container's output.
type LogLine struct {
	Stream string // stdout or stderr
	Text   string
}

// Client talks to one engine over its unix socket.
type Client struct {
	Socket string
	http   *http.Client
}

// New returns a client for the engine socket at path.
func New(path string) *Client {
	return &Client{Socket: path, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		// Streams (events, logs) stay open for long; idle ones need not.
		IdleConnTimeout: 30 * time.Second,
	}}}
}

// apiError is the engine's error body.
type apiError struct {
	Message string `json:"message"`
}

func (c *Client) request(ctx context.Context, method, path string, q url.Values) (*http.Response, error) {
	u := "http://engine" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("engine %s %s: %w", method, path, err)
	}
	// 304 is the engine's "already in that state" for start/stop: not a failure.
	if resp.StatusCode/100 != 2 && resp.StatusCode != http.StatusNotModified {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		var ae apiError
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &ae) == nil && ae.Message != "" {
			msg = ae.Message
		}
		return nil, fmt.Errorf("engine %s %s: %s (HTTP %d)", method, path, msg, resp.StatusCode)
	}
	return resp, nil
}

func (c *Client) getJSON(ctx context.Context, path string, q url.Values, out any) error {
	resp, err := c.request(ctx, http.MethodGet, path, q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("engine %s: decode: %w", path, err)
	}
	return nil
}

// Version asks the engine for its version.
func (c *Client) Version(ctx context.Context) (Version, error) {
	var v Version
	err := c.getJSON(ctx, "/version", nil, &v)
	return v, err
}

// Containers lists all containers, running or not.
func (c *Client) Containers(ctx context.Context) ([]Container, error) {
	var cs []Container
	err := c.getJSON(ctx, "/containers/json", url.Values{"all": {"1"}}, &cs)
	return cs, err
}

// Images lists the images.
func (c *Client) Images(ctx context.Context) ([]Image, error) {
	var is []Image
	err := c.getJSON(ctx, "/images/json", nil, &is)
	return is, err
}

// Do applies an action to a container.
func (c *Client) Do(ctx context.Context, id string, a Action) error {
	var (
		resp *http.Response
		err  error
	)
	p := "/containers/" + url.PathEscape(id)
	switch a {
	case ActionStart, ActionStop, ActionRestart:
		resp, err = c.request(ctx, http.MethodPost, p+"/"+string(a), nil)
	case ActionRemove:
		resp, err = c.request(ctx, http.MethodDelete, p, url.Values{"force": {"1"}})
	default:
		return fmt.Errorf("unknown container action %q", a)
	}
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// RemoveImage deletes an image.
func (c *Client) RemoveImage(ctx context.Context, id string) error {
	resp, err := c.request(ctx, http.MethodDelete, "/images/"+url.PathEscape(id), nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Events calls fn for each container and image event until ctx ends or the stream breaks.
func (c *Client) Events(ctx context.Context, fn func(Event)) error {
	filters := `{"type":["container","image"]}`
	resp, err := c.request(ctx, http.MethodGet, "/events", url.Values{"filters": {filters}})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var e Event
		if err := dec.Decode(&e); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("engine events: %w", err)
		}
		fn(e)
	}
}

// Logs follows a container's output, calling fn per line, until ctx ends or the
// container's output ends.
func (c *Client) Logs(ctx context.Context, id string, tail int, fn func(LogLine)) error {
	q := url.Values{"follow": {"1"}, "stdout": {"1"}, "stderr": {"1"}, "tail": {fmt.Sprint(tail)}}
	resp, err := c.request(ctx, http.MethodGet, "/containers/"+url.PathEscape(id)+"/logs", q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// Engines since API 1.42 say which framing they use; older ones need a sniff.
	var muxed bool
	br := bufio.NewReader(resp.Body)
	switch ct := resp.Header.Get("Content-Type"); {
	case strings.Contains(ct, "multiplexed"):
		muxed = true
	case strings.Contains(ct, "raw-stream"):
		muxed = false
	default:
		h, _ := br.Peek(8)
		muxed = len(h) == 8 && h[0] <= 2 && h[1] == 0 && h[2] == 0 && h[3] == 0
	}
	if muxed {
		err = Demux(br, fn)
	} else {
		err = splitLines(br, "stdout", fn)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// Demux splits the engine's multiplexed stream (8-byte headers: stream, 0, 0, 0, size)
// into lines, keeping a partial line per stream until its end arrives.
func Demux(r io.Reader, fn func(LogLine)) error {
	var hdr [8]byte
	partial := map[string]string{}
	flush := func() {
		for s, p := range partial {
			if p != "" {
				fn(LogLine{Stream: s, Text: p})
			}
		}
	}
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			flush()
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("log stream: %w", err)
		}
		stream := "stdout"
		switch hdr[0] {
		case 0, 1:
		case 2:
			stream = "stderr"
		default:
			return fmt.Errorf("log stream: bad frame header %x", hdr)
		}
		n := binary.BigEndian.Uint32(hdr[4:])
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			flush()
			return fmt.Errorf("log stream: %w", err)
		}
		text := partial[stream] + string(buf)
		for {
			i := strings.IndexByte(text, '\n')
			if i < 0 {
				break
			}
			fn(LogLine{Stream: stream, Text: strings.TrimSuffix(text[:i], "\r")})
			text = text[i+1:]
		}
		partial[stream] = text
	}
}

func splitLines(r io.Reader, stream string, fn func(LogLine)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fn(LogLine{Stream: stream, Text: strings.TrimSuffix(sc.Text(), "\r")})
	}
	return sc.Err()
}
