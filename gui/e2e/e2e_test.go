// Package e2e screenshots the dashboard against a real running machine, under a real
// X display (Xvfb). It skips unless told which machine to use:
//
//	SKIFF_GUI_E2E_HOME     the machine's SKIFF_HOME
//	SKIFF_GUI_E2E_MACHINE  the machine's name (it must be running)
//	SKIFF_ARTIFACTS        where the PNG goes (default ./artifacts)
//	DISPLAY                an X display; when unset, an Xvfb is started for the test
//
// SKIFF_GUI_E2E_FAKE=1 instead builds a fake Skiff home (fake agent and engine on the
// machine's real socket paths) to check this test itself without a machine.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/app"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/skiff-dev/skiff/gui/model"
	"github.com/skiff-dev/skiff/gui/ui"
	"github.com/skiff-dev/skiff/machine"
)

// Screen size of the Xvfb the test starts; the window fills it.
const screenW, screenH = 1280, 800

var theApp fyne.App

// TestMain runs fyne's event loop on the main goroutine, as its GL driver requires,
// and the tests beside it.
func TestMain(m *testing.M) {
	if skipReason() != "" {
		os.Exit(m.Run())
	}
	if os.Getenv("DISPLAY") == "" {
		stop, err := startXvfb()
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e: no DISPLAY and Xvfb could not start:", err)
			os.Exit(1)
		}
		defer stop()
	}
	theApp = app.NewWithID("dev.skiff.tray.e2e")
	code := make(chan int, 1)
	go func() {
		code <- m.Run()
		fyne.Do(theApp.Quit)
	}()
	theApp.Run()
	// Closing the test's window can end the event loop before the tests have returned;
	// the exit code is theirs, not whatever the loop saw last.
	os.Exit(<-code)
}

func skipReason() string {
	if os.Getenv("SKIFF_GUI_E2E_FAKE") == "1" {
		return ""
	}
	if os.Getenv("SKIFF_GUI_E2E_HOME") == "" || os.Getenv("SKIFF_GUI_E2E_MACHINE") == "" {
		return "set SKIFF_GUI_E2E_HOME and SKIFF_GUI_E2E_MACHINE to a running Skiff machine (or SKIFF_GUI_E2E_FAKE=1) to screenshot the dashboard"
	}
	return ""
}

// startXvfb starts a private X server and points DISPLAY at it.
func startXvfb() (func(), error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("Xvfb", "-displayfd", "3", "-screen", "0", fmt.Sprintf("%dx%dx24", screenW, screenH), "-nolisten", "tcp")
	cmd.ExtraFiles = []*os.File{w}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start Xvfb: %w", err)
	}
	w.Close()
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		return nil, fmt.Errorf("Xvfb display number: %w", err)
	}
	os.Setenv("DISPLAY", ":"+strings.TrimSpace(line))
	return func() { cmd.Process.Kill(); cmd.Wait() }, nil
}

// engineHTTP talks to the engine socket for what the dashboard itself never does
// (create containers).
func engineHTTP(sock string) *http.Client {
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}}
}

func call(t *testing.T, c *http.Client, method, path string, body any, want ...int) []byte {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://engine"+path, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if !slices.Contains(want, resp.StatusCode) {
		t.Fatalf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, out)
	}
	return out
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestDashboardScreenshot(t *testing.T) {
	if r := skipReason(); r != "" {
		t.Skip(r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	home, name := machine.Home{Root: os.Getenv("SKIFF_GUI_E2E_HOME")}, os.Getenv("SKIFF_GUI_E2E_MACHINE")
	if os.Getenv("SKIFF_GUI_E2E_FAKE") == "1" {
		home, name = fakeHome(t)
	}
	if abs, err := filepath.Abs(home.Root); err == nil {
		home.Root = abs
	}
	dir := home.Dir(name)
	if st := dir.Status(ctx); st.State != machine.StateRunning {
		t.Fatalf("machine %s in %s is %s, not running: %s", name, home.Root, st.State, st.Reason)
	}

	// Two web servers with published ports, started through the engine socket.
	eng := engineHTTP(dir.Sock(machine.SockEngine))
	type box struct {
		name string
		port int
	}
	boxes := []box{{"skiff-gui-e2e-web1", freePort(t)}, {"skiff-gui-e2e-web2", freePort(t)}}
	for _, b := range boxes {
		call(t, eng, http.MethodDelete, "/containers/"+b.name+"?force=1", nil, 204, 404)
		out := call(t, eng, http.MethodPost, "/containers/create?name="+b.name, map[string]any{
			"Image": "skiff-test/busybox", "Cmd": []string{"httpd", "-f", "-p", "80"},
			"ExposedPorts": map[string]any{"80/tcp": map[string]any{}},
			"HostConfig": map[string]any{"PortBindings": map[string]any{
				"80/tcp": []map[string]string{{"HostPort": fmt.Sprint(b.port)}}}},
		}, 201)
		var created struct{ Id string }
		json.Unmarshal(out, &created)
		call(t, eng, http.MethodPost, "/containers/"+created.Id+"/start", nil, 204, 304)
		t.Cleanup(func() { call(t, eng, http.MethodDelete, "/containers/"+created.Id+"?force=1", nil, 204, 404) })
	}

	m := model.New(model.HomeSource{Home: home}, model.ManagerStarter{Manager: &machine.Manager{Home: home}}, model.Options{})
	go m.Run(ctx)
	var d *ui.Dashboard
	fyne.DoAndWait(func() {
		d = ui.NewDashboard(ctx, theApp, m, ui.Options{Size: fyne.NewSize(screenW, screenH)})
		d.Window().Show()
		d.Window().Resize(fyne.NewSize(screenW, screenH))
	})
	defer fyne.DoAndWait(func() { d.Window().Close() })
	m.Select(name)

	// Wait until the window shows the machine, both containers and both ports.
	want := []string{name, "running"}
	for _, b := range boxes {
		want = append(want, b.name, fmt.Sprintf("%d→80", b.port))
	}
	deadline := time.Now().Add(90 * time.Second)
	var got []string
	for {
		fyne.DoAndWait(func() { got = texts(d.Window().Content()) })
		missing := []string{}
		for _, w := range want {
			if !slices.Contains(got, w) {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dashboard never showed %q; it shows %q", missing, got)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The published ports reach the host through the agent's forwards: ask one.
	for _, b := range boxes {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", b.port))
		if err != nil {
			t.Logf("note: port %d does not answer on the host yet: %v", b.port, err)
			continue
		}
		resp.Body.Close()
		t.Logf("port %d answers HTTP %d", b.port, resp.StatusCode)
	}
	time.Sleep(time.Second) // let the last frame reach the X server

	art := os.Getenv("SKIFF_ARTIFACTS")
	if art == "" {
		art = "artifacts"
	}
	if err := os.MkdirAll(art, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(art, "skiff-dashboard.png")
	if out, err := exec.Command("import", "-window", "root", shot).CombinedOutput(); err != nil {
		t.Fatalf("import -window root: %v: %s", err, out)
	}
	checkPNG(t, shot)
	abs, _ := filepath.Abs(shot)
	t.Logf("screenshot: %s", abs)
}

// texts lists the labels, links and buttons a user can read in o.
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

// checkPNG fails unless the file is a full-screen PNG with real content: many colours,
// and the window's text spread over the screen rather than a blank or black frame.
func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s is not a PNG: %v", path, err)
	}
	b := img.Bounds()
	if b.Dx() < screenW || b.Dy() < screenH {
		t.Fatalf("screenshot is %dx%d, want at least %dx%d", b.Dx(), b.Dy(), screenW, screenH)
	}
	colours := map[uint32]bool{}
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[(r>>8)<<16|(g>>8)<<8|bl>>8] = true
		}
	}
	if len(colours) < 32 {
		t.Fatalf("screenshot has only %d colours: the window did not draw", len(colours))
	}
	// Every quadrant must hold something other than its background colour.
	for _, q := range []image.Rectangle{
		image.Rect(0, 0, b.Dx()/2, b.Dy()/2), image.Rect(b.Dx()/2, 0, b.Dx(), b.Dy()/2),
		image.Rect(0, b.Dy()/2, b.Dx()/2, b.Dy()), image.Rect(b.Dx()/2, b.Dy()/2, b.Dx(), b.Dy()),
	} {
		qc := map[uint32]bool{}
		for y := q.Min.Y; y < q.Max.Y; y += 2 {
			for x := q.Min.X; x < q.Max.X; x += 2 {
				r, g, bl, _ := img.At(x, y).RGBA()
				qc[(r>>8)<<16|(g>>8)<<8|bl>>8] = true
			}
		}
		if len(qc) < 4 {
			t.Fatalf("screenshot quadrant %v is blank", q)
		}
	}
}
