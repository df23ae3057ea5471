package hostagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/forward"
	"github.com/skiff-dev/skiff/forward/guest"
	"github.com/skiff-dev/skiff/forward/transport"
	"github.com/skiff-dev/skiff/vmm"
)

// fakeBackend boots fakeVMs: in-process "guests" that run the real guest agent's
// transport server (forward/guest) on a unix socket the host dials as the VM's socket
// device, and announce readiness to the host agent the way a WSL guest does, through a
// listener the VM offers the host (vmm.HostStreamer, vmm.HostListener). No QEMU: the
// host agent's own logic runs for real against it.
type fakeBackend struct {
	logf func(string, ...any)
	dir  string // short: the VMs' sockets live here

	// NoReady makes guests never announce readiness (a boot that hangs).
	NoReady bool
	// ReadyAfter delays the announcement, as a real boot takes a while.
	ReadyAfter time.Duration
	// StartErr fails Start.
	StartErr error
	// Listeners is what the guests' socket tables report to the host; with HoldPorts the
	// guests report nothing at all (a restored guest that has not answered yet).
	Listeners []forward.Listener
	HoldPorts bool

	mu  sync.Mutex
	vms []*fakeVM
}

func newFakeBackend(t *testing.T) *fakeBackend {
	dir, err := os.MkdirTemp("", "skha")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return &fakeBackend{logf: t.Logf, dir: dir}
}

func (b *fakeBackend) Name() string                    { return "fake" }
func (b *fakeBackend) Check(ctx context.Context) error { return nil }
func (b *fakeBackend) HostStreamPort() uint32          { return 1026 }

func (b *fakeBackend) Start(ctx context.Context, cfg vmm.Config) (vmm.VM, error) {
	if b.StartErr != nil {
		return nil, b.StartErr
	}
	secret, err := os.ReadFile(filepath.Join(cfg.Dir, "secret"))
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	n := len(b.vms)
	b.mu.Unlock()
	vm := &fakeVM{done: make(chan struct{}), guestSock: filepath.Join(b.dir, fmt.Sprintf("g%d", n)),
		hostSock: filepath.Join(b.dir, fmt.Sprintf("h%d", n)), secret: secret, logf: b.logf,
		listeners: b.Listeners, holdPorts: b.HoldPorts}
	if err := vm.boot(!b.NoReady, b.ReadyAfter); err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.vms = append(b.vms, vm)
	b.mu.Unlock()
	return vm, nil
}

// last is the VM booted last.
func (b *fakeBackend) last() *fakeVM {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.vms) == 0 {
		return nil
	}
	return b.vms[len(b.vms)-1]
}

type fakeVM struct {
	guestSock, hostSock string
	secret              []byte
	logf                func(string, ...any)
	listeners           []forward.Listener
	holdPorts           bool

	quiesced atomic.Bool  // the guest prepared for a suspend
	resumes  atomic.Int32 // how often it was told to carry on

	cancel context.CancelFunc
	once   sync.Once
	done   chan struct{}
	err    error // why it ended; set before done closes
}

// boot starts the guest's transport server and, if ready, its announcement. The host
// listener is made first: the agent asks for it right after Start.
func (v *fakeVM) boot(ready bool, after time.Duration) error {
	gl, err := net.Listen("unix", v.guestSock)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	v.cancel = cancel
	eng, err := fakeEngine(ctx, v.guestSock+".engine")
	if err != nil {
		cancel()
		return err
	}
	agent := &guest.Agent{EngineSocket: eng, System: v, Logf: v.logf}
	route := func(service string) (transport.Handler, error) {
		if service == forward.ServicePorts {
			// The real scanner reads this host's socket tables, whose listeners are not
			// the guest's: report the backend's and hold the stream.
			return func(ctx context.Context, _ string, c net.Conn) {
				defer c.Close()
				if !v.holdPorts {
					json.NewEncoder(c).Encode(append([]forward.Listener{}, v.listeners...))
				}
				<-ctx.Done()
			}, nil
		}
		return agent.Route(service)
	}
	go guest.ServeTransport(ctx, []net.Listener{gl}, v.secret, route, v.logf)
	if ready {
		host := &transport.Client{Secret: v.secret, Raw: func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", v.hostSock)
		}}
		go func() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(after):
			}
			guest.AnnounceReady(ctx, host, forward.Ready{EngineAPI: "1.47", BootMillis: 42}, v.logf)
		}()
	}
	return nil
}

func (v *fakeVM) end(err error) {
	v.once.Do(func() {
		v.err = err
		v.cancel()
		close(v.done)
	})
}

// Crash ends the VM as a hypervisor that died would.
func (v *fakeVM) Crash() { v.end(errors.New("exit status 1")) }

func (v *fakeVM) Wait(ctx context.Context) error {
	select {
	case <-v.done:
		return v.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (v *fakeVM) Kill(ctx context.Context) error { v.end(errors.New("killed")); return nil }

func (v *fakeVM) DialGuest(ctx context.Context, port uint32) (net.Conn, error) {
	select {
	case <-v.done:
		return nil, errors.New("the VM is off")
	default:
	}
	var d net.Dialer
	return d.DialContext(ctx, "unix", v.guestSock)
}

func (v *fakeVM) ListenGuest(port uint32) (net.Listener, error) {
	return net.Listen("unix", v.hostSock)
}

// The guest system (guest.System): a shutdown powers the VM off.
func (v *fakeVM) SetClock(t time.Time) time.Duration { return time.Since(t) }
func (v *fakeVM) Shutdown()                          { go v.end(nil) }
func (v *fakeVM) Trim() (string, error)              { return "", nil }
func (v *fakeVM) Info(ctx context.Context) forward.GuestInfo {
	return forward.GuestInfo{EngineAPI: "1.47"}
}

// fakeEngine answers the little of the Engine API the host agent's watchers ask for, on
// a unix socket at path, until ctx ends.
func fakeEngine(ctx context.Context, path string) (string, error) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/_ping"):
			w.Header().Set("Api-Version", "1.47")
			w.Write([]byte("OK"))
		case strings.HasSuffix(r.URL.Path, "/events"):
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		case strings.HasSuffix(r.URL.Path, "/containers/json"):
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte("[]"))
		default:
			http.NotFound(w, r)
		}
	})}
	go srv.Serve(ln)
	context.AfterFunc(ctx, func() { srv.Close() })
	return path, nil
}

// warmBackend is a fakeBackend that can suspend its VMs and restore them (vmm.Warm).
type warmBackend struct {
	*fakeBackend
	// SuspendErr fails the save, after the guest has prepared for it.
	SuspendErr error
}

func (w *warmBackend) StateKey(ctx context.Context, cfg vmm.Config) (string, error) {
	return "fake-1", nil
}

func (w *warmBackend) CanSuspend(vm vmm.VM) error {
	_, err := vmm.Own[*fakeVM]("fake", vm)
	return err
}

func (w *warmBackend) Suspend(ctx context.Context, vm vmm.VM, dir string) error {
	v, err := vmm.Own[*fakeVM]("fake", vm)
	if err != nil {
		return err
	}
	if !v.quiesced.Load() {
		return errors.New("the guest was not told to prepare")
	}
	if w.SuspendErr != nil {
		return w.SuspendErr
	}
	if err := os.WriteFile(filepath.Join(dir, "ram"), []byte("saved"), 0o600); err != nil {
		return err
	}
	v.end(nil)
	return nil
}

func (w *warmBackend) Restore(ctx context.Context, cfg vmm.Config, dir string) (vmm.VM, error) {
	if _, err := os.Stat(filepath.Join(dir, "ram")); err != nil {
		return nil, err
	}
	// A resumed guest announces nothing: the agent asks it to resume instead.
	saved := w.NoReady
	w.NoReady = true
	defer func() { w.NoReady = saved }()
	return w.Start(ctx, cfg)
}

func (w *warmBackend) DiscardState(ctx context.Context, cfg vmm.Config) error { return nil }
func (w *warmBackend) DiskFiles(cfg vmm.Config) []string                      { return cfg.DiskPaths() }

// The guest's side of a suspend (guest.Suspender).
func (v *fakeVM) Quiesce() error { v.quiesced.Store(true); return nil }
func (v *fakeVM) Resume(now time.Time) (time.Duration, error) {
	v.quiesced.Store(false)
	v.resumes.Add(1)
	return 0, nil
}
