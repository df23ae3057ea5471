package agentapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/skiff-dev/skiff/forward"
	"github.com/skiff-dev/skiff/machine/errdefs"
)

// Client talks to one host agent.
type Client struct {
	Socket string
	http   *http.Client
}

// NewClient returns a client for the control socket at path.
func NewClient(path string) *Client {
	return &Client{Socket: path, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://agent"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return errdefs.FromHTTP(resp.StatusCode, "agent: "+strings.TrimSpace(string(msg)))
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// State fetches the agent's live state.
func (c *Client) State(ctx context.Context) (*State, error) {
	var s State
	return &s, c.do(ctx, http.MethodGet, PathState, nil, &s)
}

// Stop asks the agent to stop the machine and waits for its answer (sent once the VM is down).
func (c *Client) Stop(ctx context.Context, r StopRequest) (*StopResult, error) {
	var out StopResult
	if err := c.do(ctx, http.MethodPost, PathStop, r, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Control relays a control request to the guest agent.
func (c *Client) Control(ctx context.Context, r forward.ControlRequest) (*forward.ControlResponse, error) {
	var out forward.ControlResponse
	if err := c.do(ctx, http.MethodPost, PathControl, r, &out); err != nil {
		return nil, err
	}
	if out.Error != "" {
		return &out, fmt.Errorf("guest: %s", out.Error)
	}
	return &out, nil
}

// Events calls fn for each event until fn returns an error (returned as is), ctx ends or
// the agent goes away. The stream opens with the current phase.
func (c *Client) Events(ctx context.Context, fn func(Event) error) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent"+PathEvents, nil)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return errdefs.FromHTTP(resp.StatusCode, "agent: "+strings.TrimSpace(string(msg)))
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var e Event
		if err := dec.Decode(&e); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

// Connect opens a raw stream to a guest service (for example "ssh") through the agent.
func (c *Client) Connect(ctx context.Context, service string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.Socket)
	if err != nil {
		return nil, err
	}
	req, _ := http.NewRequest(http.MethodPost, "http://agent"+PathConnect+"?service="+url.QueryEscape(service), nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", UpgradeProto)
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		conn.Close()
		return nil, errdefs.FromHTTP(resp.StatusCode, fmt.Sprintf("connect %s: %s", service, strings.TrimSpace(string(msg))))
	}
	if br.Buffered() > 0 {
		return &bufferedConn{Conn: conn, r: br}, nil
	}
	return conn, nil
}

// UpgradeProto is the Upgrade token of PathConnect.
const UpgradeProto = "skiff-stream"

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

func (b *bufferedConn) CloseWrite() error {
	if cw, ok := b.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
