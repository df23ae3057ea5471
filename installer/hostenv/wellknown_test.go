package hostenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// serveEngine starts a fake engine answering /_ping on a unix socket.
func serveEngine(t *testing.T, path string) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/_ping" {
			fmt.Fprint(w, "OK")
			return
		}
		http.NotFound(w, r)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
}

// staleSocket leaves a socket file behind with nobody listening, as a crashed engine does.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
}

func TestLinkSocketStates(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ours := filepath.Join(dir, "skiff", "run", "default", "docker.sock")
	other := filepath.Join(dir, "skiff", "run", "dev", "docker.sock")
	isOurs := func(p string) bool { return IsSkiffPath(p, filepath.Join(dir, "skiff", "run")) }
	foreign := filepath.Join(dir, "desktop.sock")
	serveEngine(t, foreign)

	cases := []struct {
		name    string
		setup   func(p string)
		wantErr bool
		state   EndpointState
		fix     string
	}{
		{"free", func(string) {}, false, EndpointFree, ""},
		{"ours already", func(p string) { os.Symlink(ours, p) }, false, EndpointOurs, ""},
		{"another machine of ours", func(p string) { os.Symlink(other, p) }, false, EndpointOurs, ""},
		{"link elsewhere (live)", func(p string) { os.Symlink(foreign, p) }, true, EndpointForeignLink, "sudo rm"},
		{"link elsewhere (dangling)", func(p string) { os.Symlink("/nonexistent/docker.sock", p) }, true, EndpointForeignLink, "sudo rm"},
		{"live engine socket", func(p string) { serveEngine(t, p) }, true, EndpointForeignLive, "systemctl stop docker"},
		{"stale socket", func(p string) { staleSocket(t, p) }, true, EndpointStale, "sudo rm"},
		{"regular file", func(p string) { os.WriteFile(p, nil, 0o644) }, true, EndpointOther, "move it"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, fmt.Sprintf("d%d.sock", i))
			c.setup(p)
			o := SocketLinkOptions{Path: p, Target: ours, IsOurs: isOurs, Consented: true}
			st, err := InspectSocket(ctx, o)
			if err != nil || st.State != c.state {
				t.Fatalf("InspectSocket = %+v, %v; want %s", st, err, c.state)
			}
			before, _ := os.Readlink(p)
			err = LinkSocket(ctx, o)
			if c.wantErr {
				var be *EndpointBusyError
				if !errors.Is(err, ErrEndpointBusy) || !errors.As(err, &be) || !strings.Contains(err.Error(), p) || !strings.Contains(be.Fix, c.fix) {
					t.Fatalf("LinkSocket = %v, want a busy error naming %s with fix %q", err, p, c.fix)
				}
				if after, _ := os.Readlink(p); after != before {
					t.Fatalf("a refused link changed %s: %q -> %q", p, before, after)
				}
				// Unlink must leave it alone too.
				if err := UnlinkSocket(ctx, o); !errors.Is(err, ErrEndpointBusy) {
					t.Fatalf("UnlinkSocket of a foreign endpoint = %v", err)
				}
				if _, err := os.Lstat(p); err != nil {
					t.Fatalf("UnlinkSocket removed a foreign endpoint: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := os.Readlink(p); got != ours {
				t.Fatalf("link points at %q", got)
			}
			if err := UnlinkSocket(ctx, o); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(p); !os.IsNotExist(err) {
				t.Fatalf("link still there: %v", err)
			}
		})
	}
}

func TestLinkSocketNeedsConsent(t *testing.T) {
	p := filepath.Join(t.TempDir(), "docker.sock")
	err := LinkSocket(context.Background(), SocketLinkOptions{Path: p, Target: "/run/skiff/docker.sock"})
	if err == nil || !strings.Contains(err.Error(), "consent") {
		t.Fatalf("LinkSocket without consent = %v", err)
	}
	if _, err := os.Lstat(p); !os.IsNotExist(err) {
		t.Fatal("a link was made without consent")
	}
}

func TestDecidePipe(t *testing.T) {
	var served string
	serve := func(_ context.Context, name string) error { served = name; return nil }
	busyPipe := func(string) (bool, error) { return true, nil }
	freePipe := func(string) (bool, error) { return false, nil }

	err := ClaimPipe(context.Background(), PipeOptions{Exists: busyPipe, Serve: serve})
	if !errors.Is(err, ErrEndpointBusy) || !strings.Contains(err.Error(), `\\.\pipe\docker_engine`) || served != "" {
		t.Fatalf("busy pipe: err=%v served=%q", err, served)
	}
	if err := ClaimPipe(context.Background(), PipeOptions{Exists: freePipe, Serve: serve}); err != nil || served != DockerEnginePipe {
		t.Fatalf("free pipe: err=%v served=%q", err, served)
	}
	probeErr := errors.New("access denied")
	if _, err := DecidePipe(PipeOptions{Exists: func(string) (bool, error) { return false, probeErr }}); !errors.Is(err, probeErr) {
		t.Fatalf("probe error not wrapped: %v", err)
	}
}

func TestEngineHost(t *testing.T) {
	for in, want := range map[string]string{
		"/home/u/.skiff/default/engine.sock": "unix:///home/u/.skiff/default/engine.sock",
		`\\.\pipe\skiff-default-1a2b3c4d`:    "npipe:////./pipe/skiff-default-1a2b3c4d",
	} {
		if got := EngineHost(in); got != want {
			t.Errorf("EngineHost(%q) = %q, want %q", in, got, want)
		}
	}
}
