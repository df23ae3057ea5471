// Package engine is the dashboard's view of an engine (Docker Engine or Podman's compatible
// API): rows shaped for its lists, read through the engine's own Go client.
package engine

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/client"

	"github.com/skiff-dev/skiff/installer/hostenv"
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

// Version is what the engine says about itself.
type Version = client.ServerVersionResult

// Event is one message of the engine's event stream.
type Event = events.Message

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

// Client talks to one engine.
type Client struct {
	api *client.Client
	err error // why api could not be made; every call returns it
}

// New returns a client for the engine at endpoint: a unix socket, or on Windows a named
// pipe (\\.\pipe\NAME). The API version is negotiated on the first request.
func New(endpoint string) *Client {
	api, err := client.New(client.WithHost(hostenv.EngineHost(endpoint)))
	if err != nil {
		return &Client{err: fmt.Errorf("engine at %s: %w", endpoint, err)}
	}
	return &Client{api: api}
}

// Close drops the client's idle connections.
func (c *Client) Close() error {
	if c.api == nil {
		return nil
	}
	return c.api.Close()
}

// Version asks the engine for its version.
func (c *Client) Version(ctx context.Context) (Version, error) {
	if c.err != nil {
		return Version{}, c.err
	}
	v, err := c.api.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		return Version{}, fmt.Errorf("engine version: %w", err)
	}
	return v, nil
}

// Containers lists all containers, running or not.
func (c *Client) Containers(ctx context.Context) ([]Container, error) {
	if c.err != nil {
		return nil, c.err
	}
	res, err := c.api.ContainerList(ctx, client.ContainerListOptions{All: true})
	return rows("containers", res.Items, err, containerRow)
}

// Images lists the images.
func (c *Client) Images(ctx context.Context) ([]Image, error) {
	if c.err != nil {
		return nil, c.err
	}
	res, err := c.api.ImageList(ctx, client.ImageListOptions{})
	return rows("images", res.Items, err, imageRow)
}

// rows turns the items of a list the engine answered into the dashboard's rows.
func rows[I, R any](what string, items []I, err error, row func(I) R) ([]R, error) {
	if err != nil {
		return nil, fmt.Errorf("engine %s: %w", what, err)
	}
	out := make([]R, 0, len(items))
	for _, it := range items {
		out = append(out, row(it))
	}
	return out, nil
}

func containerRow(s container.Summary) Container {
	c := Container{ID: s.ID, Names: s.Names, Image: s.Image, State: string(s.State), Status: s.Status, Created: s.Created}
	for _, p := range s.Ports {
		c.Ports = append(c.Ports, Port{IP: addrText(p.IP), PrivatePort: int(p.PrivatePort), PublicPort: int(p.PublicPort), Type: p.Type})
	}
	return c
}

// addrText is a as text, "" when the engine named none.
func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func imageRow(s image.Summary) Image {
	return Image{ID: s.ID, RepoTags: s.RepoTags, Size: s.Size, Created: s.Created, Containers: s.Containers}
}

// Do applies an action to a container. One already in the asked state is no failure
// (the engine answers 304).
func (c *Client) Do(ctx context.Context, id string, a Action) error {
	if c.err != nil {
		return c.err
	}
	var err error
	switch a {
	case ActionStart:
		_, err = c.api.ContainerStart(ctx, id, client.ContainerStartOptions{})
	case ActionStop:
		_, err = c.api.ContainerStop(ctx, id, client.ContainerStopOptions{})
	case ActionRestart:
		_, err = c.api.ContainerRestart(ctx, id, client.ContainerRestartOptions{})
	case ActionRemove:
		_, err = c.api.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true})
	default:
		return fmt.Errorf("unknown container action %q", a)
	}
	if err != nil {
		return fmt.Errorf("engine %s: %w", a, err)
	}
	return nil
}

// RemoveImage deletes an image and the untagged parents only it used, as `docker rmi` does.
func (c *Client) RemoveImage(ctx context.Context, id string) error {
	if c.err != nil {
		return c.err
	}
	if _, err := c.api.ImageRemove(ctx, id, client.ImageRemoveOptions{PruneChildren: true}); err != nil {
		return fmt.Errorf("engine remove image: %w", err)
	}
	return nil
}

// Events calls fn for each container and image event until ctx ends or the stream breaks.
func (c *Client) Events(ctx context.Context, fn func(Event)) error {
	if c.err != nil {
		return c.err
	}
	res := c.api.Events(ctx, client.EventsListOptions{Filters: make(client.Filters).Add("type", "container", "image")})
	for {
		select {
		case e := <-res.Messages:
			fn(e)
		case err := <-res.Err:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("engine events: %w", err)
		}
	}
}

// Logs follows a container's output, calling fn per line, until ctx ends or the
// container's output ends.
func (c *Client) Logs(ctx context.Context, id string, tail int, fn func(LogLine)) error {
	if c.err != nil {
		return c.err
	}
	// Only the container's config says how its output is framed.
	insp, err := c.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return fmt.Errorf("engine logs: %w", err)
	}
	rc, err := c.api.ContainerLogs(ctx, id, client.ContainerLogsOptions{
		ShowStdout: true, ShowStderr: true, Follow: true, Tail: strconv.Itoa(tail)})
	if err != nil {
		return fmt.Errorf("engine logs: %w", err)
	}
	defer rc.Close()
	err = readLines(rc, insp.Container.Config != nil && insp.Container.Config.Tty, fn)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("engine logs: %w", err)
	}
	return nil
}

// readLines splits a container's output into lines: one raw stream for a TTY, else the
// engine's multiplexed stdout and stderr.
func readLines(r io.Reader, tty bool, fn func(LogLine)) error {
	stdout, stderr := &lineWriter{stream: "stdout", fn: fn}, &lineWriter{stream: "stderr", fn: fn}
	var err error
	if tty {
		_, err = io.Copy(stdout, r)
	} else {
		_, err = stdcopy.StdCopy(stdout, stderr, r)
	}
	stdout.flush()
	stderr.flush()
	return err
}

// lineWriter hands whole lines of one stream to fn, keeping a partial line until its end
// arrives: the engine frames output as it was written, not by line.
type lineWriter struct {
	stream  string
	fn      func(LogLine)
	partial []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.fn(LogLine{Stream: w.stream, Text: strings.TrimSuffix(string(w.partial[:i]), "\r")})
		w.partial = w.partial[i+1:]
	}
	return len(p), nil
}

// flush hands on a last line that has no newline.
func (w *lineWriter) flush() {
	if len(w.partial) > 0 {
		w.fn(LogLine{Stream: w.stream, Text: string(w.partial)})
		w.partial = nil
	}
}
