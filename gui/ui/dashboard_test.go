package ui

import (
	"context"
	"fmt"
	"image"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/skiff-dev/skiff/gui/engine"
	"github.com/skiff-dev/skiff/gui/fake"
	"github.com/skiff-dev/skiff/gui/model"
	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/machine/agentapi"
)

// harness runs a dashboard against fake agent and engine servers. Widgets are touched
// only from one goroutine (q), like fyne's real event loop, so the model's callbacks
// and the test's taps never race.
type harness struct {
	t       *testing.T
	app     fyne.App
	src     *fake.Source
	starter *fake.Starter
	m       *model.Model
	d       *Dashboard
	q       chan func()

	mu     sync.Mutex
	opened []string
	qmu    sync.Mutex
	closed bool
}

// schedule queues f for the UI goroutine, dropping it once the test is over.
func (h *harness) schedule(f func()) {
	h.qmu.Lock()
	defer h.qmu.Unlock()
	if !h.closed {
		h.q <- f
	}
}

func newHarness(t *testing.T, setup func(src *fake.Source)) *harness {
	t.Helper()
	dir, err := fake.ShortTempDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	h := &harness{t: t, app: test.NewTempApp(t), src: fake.NewSource(dir), q: make(chan func(), 4096)}
	t.Cleanup(h.src.Close)
	setup(h.src)
	h.starter = &fake.Starter{Src: h.src}
	h.m = model.New(h.src, h.starter, model.Options{Poll: 50 * time.Millisecond, Refresh: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		for f := range h.q {
			if f == nil {
				return
			}
			f()
		}
	}()
	// Stop the UI goroutine before the next test starts: fyne's caches are global and
	// assume one UI goroutine.
	t.Cleanup(func() {
		cancel()
		h.qmu.Lock()
		h.closed = true
		h.qmu.Unlock()
		h.q <- nil
		<-exited
	})
	h.onUI(func() {
		h.d = NewDashboard(ctx, h.app, h.m, Options{
			Size:     fyne.NewSize(1280, 760),
			Schedule: h.schedule,
			OpenURL: func(u *url.URL) error {
				h.mu.Lock()
				h.opened = append(h.opened, u.String())
				h.mu.Unlock()
				return nil
			},
		})
		h.d.win.Show()
	})
	go h.m.Run(ctx)
	return h
}

// onUI runs f on the UI goroutine and waits for it.
func (h *harness) onUI(f func()) {
	done := make(chan struct{})
	h.q <- func() { defer close(done); f() }
	<-done
}

func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var ok bool
		h.onUI(func() { ok = cond() })
		if ok {
			return
		}
		if time.Now().After(deadline) {
			var got []string
			h.onUI(func() { got = texts(h.d.win.Content()) })
			h.t.Fatalf("timed out waiting for: %s\nvisible texts: %q", what, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// texts lists what a user can read in o: labels, links and buttons that are shown.
func texts(o fyne.CanvasObject) []string {
	var out []string
	for _, c := range test.LaidOutObjects(o) {
		if !c.Visible() {
			continue
		}
		switch w := c.(type) {
		case *widget.Label:
			out = append(out, w.Text)
		case *widget.Hyperlink:
			out = append(out, w.Text)
		case *widget.Button:
			out = append(out, w.Text)
		}
	}
	return out
}

func shows(o fyne.CanvasObject, want ...string) bool {
	got := texts(o)
	for _, w := range want {
		if !slices.Contains(got, w) {
			return false
		}
	}
	return true
}

func findButton(o fyne.CanvasObject, text string) *widget.Button {
	for _, c := range test.LaidOutObjects(o) {
		if b, ok := c.(*widget.Button); ok && b.Text == text && b.Visible() {
			return b
		}
	}
	return nil
}

func findLink(o fyne.CanvasObject, text string) *widget.Hyperlink {
	for _, c := range test.LaidOutObjects(o) {
		if l, ok := c.(*widget.Hyperlink); ok && l.Text == text {
			return l
		}
	}
	return nil
}

// selectContainer selects the row of the named container, as a click would.
func (h *harness) selectContainer(name string) {
	h.t.Helper()
	h.eventually("container "+name+" selectable", func() bool {
		for i, c := range h.d.snap.Containers {
			if c.Name() == name {
				h.d.containerList.Select(i)
				return h.d.selContainer == c.ID
			}
		}
		return false
	})
}

// confirm taps the dialog's confirm button, which must be labelled text.
func (h *harness) confirm(text string) {
	h.t.Helper()
	h.onUI(func() {
		top := h.d.win.Canvas().Overlays().Top()
		if top == nil {
			h.t.Fatal("no confirmation dialog is shown")
		}
		b := findButton(top, text)
		if b == nil {
			h.t.Fatalf("the dialog has no %q button: %q", text, texts(top))
		}
		test.Tap(b)
	})
}

func twoMachines(src *fake.Source) {
	m, err := src.Add(machine.Spec{Name: "default", CPUs: 2, MemoryMiB: 2048, DiskGiB: 20}, agentapi.PhaseRunning)
	if err != nil {
		panic(err)
	}
	if _, err := src.Add(machine.Spec{Name: "spare", CPUs: 1, MemoryMiB: 1024, DiskGiB: 10}, ""); err != nil {
		panic(err)
	}
	m.Engine.AddContainer(engine.Container{ID: "a1", Names: []string{"/alpha"}, Image: "busybox", State: "running", Status: "Up 2 minutes"})
	m.Engine.AddImage(engine.Image{ID: "sha256:feedbeef", RepoTags: []string{"busybox:latest"}, Size: 4 << 20, Created: time.Now().Unix()})
	m.Engine.Log("a1", "stdout", "alpha says hello")
}

func TestDashboardListsFollowEvents(t *testing.T) {
	h := newHarness(t, twoMachines)
	fm := h.src.Machine("default")
	h.eventually("machines and the first container", func() bool {
		return shows(h.d.machineList, "default", "running", "spare", "stopped") &&
			shows(h.d.containerList, "alpha", "busybox", "running", "Up 2 minutes")
	})
	h.eventually("machine details", func() bool {
		return shows(h.d.win.Content(), "Docker 28.5.2", "1.5 GiB used of 20.0 GiB", "2.0 GiB, 740.0 MiB in use on the host")
	})

	// A container started from the docker CLI arrives as an engine event.
	fm.Engine.AddContainer(engine.Container{ID: "b2", Names: []string{"/beta"}, Image: "nginx:1.27", State: "running",
		Status: "Up 1 second", Ports: []engine.Port{{IP: "0.0.0.0", PrivatePort: 80, PublicPort: 8080, Type: "tcp"}}})
	h.eventually("beta with its port", func() bool { return shows(h.d.containerList, "alpha", "beta", "nginx:1.27", "8080→80") })

	// Its state change, too.
	fm.Engine.AddContainer(engine.Container{ID: "b2", Names: []string{"/beta"}, Image: "nginx:1.27", State: "exited", Status: "Exited (0) 1 second ago"})
	h.eventually("beta exited", func() bool {
		return shows(h.d.containerList, "exited", "Exited (0) 1 second ago") && findLink(h.d.containerList, "8080→80") == nil
	})

	// Forwards come from agent events.
	fm.Agent.SetForwards([]agentapi.Forward{{Proto: "tcp", HostAddr: "127.0.0.1:8080", GuestAddr: "0.0.0.0:8080"}})
	h.eventually("forward listed", func() bool { return shows(h.d.win.Content(), "127.0.0.1:8080 (tcp)") })

	// The agent going to "stopping" shows on the machine's row.
	fm.Agent.SetPhase(agentapi.PhaseStopping)
	h.eventually("stopping shown", func() bool { return shows(h.d.machineList, "default", "stopping") })
}

func TestDashboardButtonsCallTheEngine(t *testing.T) {
	h := newHarness(t, twoMachines)
	fe := h.src.Machine("default").Engine
	h.selectContainer("alpha")

	h.eventually("stop enabled", func() bool { return !h.d.cStop.Disabled() })
	fe.Reset()
	h.onUI(func() { test.Tap(h.d.cStop) })
	h.eventually("stop request", func() bool { return fe.Has("POST /containers/a1/stop") })
	h.eventually("alpha exited and start enabled", func() bool {
		return shows(h.d.containerList, "exited") && !h.d.cStart.Disabled() && h.d.cStop.Disabled()
	})
	h.onUI(func() { test.Tap(h.d.cStart) })
	h.eventually("start request", func() bool { return fe.Has("POST /containers/a1/start") })
	h.eventually("restart enabled", func() bool { return !h.d.cRestart.Disabled() })
	h.onUI(func() { test.Tap(h.d.cRestart) })
	h.eventually("restart request", func() bool { return fe.Has("POST /containers/a1/restart") })

	// Remove asks first; dismissing sends nothing.
	h.onUI(func() { test.Tap(h.d.cRemove) })
	h.confirm("No")
	time.Sleep(100 * time.Millisecond)
	if fe.Has("DELETE /containers/a1") {
		t.Fatal("remove was sent although the user said no")
	}
	h.onUI(func() { test.Tap(h.d.cRemove) })
	h.confirm("Remove")
	h.eventually("remove request", func() bool { return fe.Has("DELETE /containers/a1") })
	h.eventually("alpha gone", func() bool { return !shows(h.d.containerList, "alpha") && h.d.cRemove.Disabled() })
	for _, r := range fe.Requests() {
		if strings.HasPrefix(r, "POST") && !slices.Contains([]string{"POST /containers/a1/stop", "POST /containers/a1/start", "POST /containers/a1/restart"}, r) {
			t.Fatalf("unexpected request %q", r)
		}
	}

	// An engine error shows in the window's status bar.
	fe.AddContainer(engine.Container{ID: "c3", Names: []string{"/gamma"}, State: "exited"})
	fe.FailOn("POST /containers/c3/start", "port is already allocated")
	h.selectContainer("gamma")
	h.onUI(func() { test.Tap(h.d.cStart) })
	h.eventually("error in the status bar", func() bool {
		return strings.Contains(h.d.status.Text, "port is already allocated") && h.d.status.Importance == widget.DangerImportance
	})
}

func TestDashboardPortLinkOpensBrowser(t *testing.T) {
	h := newHarness(t, func(src *fake.Source) {
		twoMachines(src)
		src.Machine("default").Engine.AddContainer(engine.Container{ID: "w1", Names: []string{"/web"}, State: "running",
			Ports: []engine.Port{{IP: "0.0.0.0", PrivatePort: 80, PublicPort: 18080, Type: "tcp"}}})
	})
	var link *widget.Hyperlink
	h.eventually("port link", func() bool { link = findLink(h.d.containerList, "18080→80"); return link != nil })
	// Tap the middle of the text: a hyperlink ignores taps beside its text.
	h.onUI(func() { test.TapAt(link, fyne.NewPos(link.Size().Width/2, link.Size().Height/2)) })
	h.mu.Lock()
	defer h.mu.Unlock()
	if !slices.Equal(h.opened, []string{"http://127.0.0.1:18080/"}) {
		t.Fatalf("opened %q", h.opened)
	}
}

func TestDashboardMachineButtons(t *testing.T) {
	h := newHarness(t, twoMachines)
	fa := h.src.Machine("default").Agent
	h.eventually("stop enabled", func() bool { return h.d.snap.Selected == "default" && !h.d.mStop.Disabled() && h.d.mStart.Disabled() })
	h.onUI(func() { test.Tap(h.d.mStop) })
	h.eventually("agent stop", func() bool { return fa.Has("POST /v1/stop") })
	h.eventually("stopped, start enabled, containers cleared", func() bool {
		return shows(h.d.machineList, "default", "stopped") && !h.d.mStart.Disabled() && len(h.d.snap.Containers) == 0
	})
	if len(h.starter.Calls()) != 0 {
		t.Fatal("stop must not start anything")
	}
	h.onUI(func() { test.Tap(h.d.mStart) })
	h.eventually("started through the CLI starter", func() bool { return slices.Equal(h.starter.Calls(), []string{"default"}) })
	h.eventually("running again with containers", func() bool {
		return shows(h.d.machineList, "running") && shows(h.d.containerList, "alpha")
	})

	// Copy DOCKER_HOST puts the engine socket on the clipboard.
	h.onUI(func() { test.Tap(h.d.mCopyEnv) })
	if got := h.app.Clipboard().Content(); !strings.Contains(got, "DOCKER_HOST") || !strings.Contains(got, h.src.Machine("default").Engine.Socket) {
		t.Fatalf("clipboard %q", got)
	}
	// The agent log opens as a file URL.
	h.onUI(func() { test.Tap(h.d.mOpenLog) })
	h.mu.Lock()
	opened := slices.Clone(h.opened)
	h.mu.Unlock()
	if len(opened) != 1 || !strings.HasPrefix(opened[0], "file://") || !strings.HasSuffix(opened[0], "default-agent.log") {
		t.Fatalf("opened %q", opened)
	}

	// Selecting the other machine shows its (empty) engine and its own details.
	h.onUI(func() { h.d.machineList.Select(1) })
	h.eventually("spare selected", func() bool {
		return h.d.snap.Selected == "spare" && len(h.d.snap.Containers) == 0 && h.d.mTitle.Text == "spare"
	})
}

func TestDashboardLogsFollow(t *testing.T) {
	h := newHarness(t, twoMachines)
	fe := h.src.Machine("default").Engine
	h.selectContainer("alpha")
	h.eventually("past log line", func() bool {
		return strings.Contains(h.d.logTitle.Text, "alpha") && shows(h.d.logList, "alpha says hello")
	})
	fe.Log("a1", "stderr", "a live error line")
	h.eventually("live log line", func() bool { return shows(h.d.logList, "alpha says hello", "a live error line") })
	if !fe.Has("GET /containers/a1/logs") {
		t.Fatalf("engine got %q", fe.Requests())
	}
}

func TestDashboardImagesRemove(t *testing.T) {
	h := newHarness(t, twoMachines)
	fe := h.src.Machine("default").Engine
	h.onUI(func() { h.d.tabs.SelectIndex(1) })
	h.eventually("image listed", func() bool {
		return shows(h.d.imageList, "busybox:latest", "feedbeef", "4.0 MiB")
	})
	h.onUI(func() { h.d.imageList.Select(0) })
	h.onUI(func() { test.Tap(h.d.iRemove) })
	h.confirm("Remove")
	h.eventually("image delete", func() bool { return fe.Has("DELETE /images/sha256:feedbeef") })
	h.eventually("image gone", func() bool { return !shows(h.d.imageList, "busybox:latest") })
}

// TestDashboardRendersDemo renders the demo world with fyne's software painter: a smoke
// test that the whole window draws. (Layout is judged on the real driver under Xvfb:
// .ci/gui-test.sh screenshots `skiff-tray --demo`.)
func TestDashboardRendersDemo(t *testing.T) {
	h := newHarness(t, func(src *fake.Source) {
		if err := fake.Demo(src); err != nil {
			panic(err)
		}
	})
	h.eventually("demo containers", func() bool {
		return shows(h.d.containerList, "web-frontend", "postgres-main", "8080→80", "5432→5432")
	})
	h.selectContainer("web-frontend")
	h.eventually("demo logs", func() bool { return len(h.d.logLines) > 10 })
	var img image.Image
	h.onUI(func() { img = h.d.win.Canvas().Capture() })
	if b := img.Bounds(); b.Dx() < 1000 || b.Dy() < 700 {
		t.Fatalf("capture is %v, want the 1280x760 window", b)
	}
	if n := distinctColours(img, 64); n < 16 {
		t.Fatalf("the capture has %d colours: nothing was drawn", n)
	}
}

func distinctColours(img image.Image, limit int) int {
	seen := map[string]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bb, _ := img.At(x, y).RGBA()
			seen[fmt.Sprint(r>>8, g>>8, bb>>8)] = true
			if len(seen) >= limit {
				return len(seen)
			}
		}
	}
	return len(seen)
}
