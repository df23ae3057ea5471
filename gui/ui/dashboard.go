// Package ui binds the fyne widgets of the tray menu and the container dashboard to
// the model. All state and actions live in gui/model; this package only renders.
package ui

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/skiff-dev/skiff/gui/engine"
	"github.com/skiff-dev/skiff/gui/model"
	"github.com/skiff-dev/skiff/machine"
)

// Options configures the dashboard.
type Options struct {
	// OpenURL opens a link in the user's browser or file viewer; default App.OpenURL.
	OpenURL func(*url.URL) error
	// Size is the window's initial size.
	Size fyne.Size
	// Notice is shown above everything, e.g. why there is no tray icon.
	Notice string
	// Schedule runs f on the UI goroutine; default fyne.Do. The model calls back from its
	// own goroutines, and widgets must only be touched from one.
	Schedule func(f func())
}

// Column widths of the containers and images tables; the last column takes the rest.
var (
	containerCols = []float32{170, 210, 74, 200}
	imageCols     = []float32{330, 130, 100, 110}
)

// Dashboard is the window with machines, containers, images and logs.
type Dashboard struct {
	app  fyne.App
	win  fyne.Window
	m    *model.Model
	opt  Options
	ctx  context.Context
	snap model.Snapshot

	pendMu     sync.Mutex
	pending    model.Change
	pendQueued bool

	notice *widget.Label

	machineList                      *widget.List
	mTitle, mState, mCPUs, mMem      *widget.Label
	mDisk, mEngine, mForwards        *widget.Label
	mStart, mStop, mRestart          *widget.Button
	mCopyEnv, mOpenLog               *widget.Button
	engineErr                        *widget.Label
	tabs                             *container.AppTabs
	containerList                    *widget.List
	selContainer                     string
	cStart, cStop, cRestart, cRemove *widget.Button
	imageList                        *widget.List
	selImage                         string
	iRemove                          *widget.Button
	logTitle                         *widget.Label
	logList                          *widget.List
	logLines                         []engine.LogLine
	status                           *widget.Label
	confirm                          *dialog.ConfirmDialog
}

// NewDashboard builds the window (not shown yet) and binds it to m.
func NewDashboard(ctx context.Context, a fyne.App, m *model.Model, opt Options) *Dashboard {
	if opt.OpenURL == nil {
		opt.OpenURL = a.OpenURL
	}
	if opt.Schedule == nil {
		opt.Schedule = fyne.Do
	}
	if opt.Size.IsZero() {
		opt.Size = fyne.NewSize(1280, 760)
	}
	d := &Dashboard{app: a, m: m, opt: opt, ctx: ctx, win: a.NewWindow("Skiff")}
	d.win.SetIcon(iconRunning)
	d.win.SetContent(d.build())
	d.win.Resize(opt.Size)
	d.SetNotice(opt.Notice)
	m.OnChange(d.queueRefresh)
	d.refresh(model.ChangeAll)
	return d
}

// queueRefresh merges changes into one pending redraw: when redraws are slower than the
// model's updates (a loaded machine), queueing one per change would fall ever further behind.
func (d *Dashboard) queueRefresh(c model.Change) {
	d.pendMu.Lock()
	idle := !d.pendQueued
	d.pending |= c
	d.pendQueued = true
	d.pendMu.Unlock()
	if idle {
		d.opt.Schedule(func() {
			d.pendMu.Lock()
			c := d.pending
			d.pending, d.pendQueued = 0, false
			d.pendMu.Unlock()
			d.refresh(c)
		})
	}
}

// Window is the dashboard's window.
func (d *Dashboard) Window() fyne.Window { return d.win }

// SetNotice shows (or, with "", hides) the banner at the top.
func (d *Dashboard) SetNotice(text string) {
	d.notice.SetText(text)
	if text == "" {
		d.notice.Hide()
	} else {
		d.notice.Show()
	}
}

func bold(text string) *widget.Label {
	return widget.NewLabelWithStyle(text, fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
}

func truncLabel(text string) *widget.Label {
	l := widget.NewLabel(text)
	l.Truncation = fyne.TextTruncateEllipsis
	return l
}

func (d *Dashboard) build() fyne.CanvasObject {
	d.notice = widget.NewLabel("")
	d.notice.Importance = widget.WarningImportance
	d.notice.Wrapping = fyne.TextWrapWord
	d.status = widget.NewLabel("Ready")
	d.status.Truncation = fyne.TextTruncateEllipsis

	split := container.NewHSplit(d.buildMachines(), d.buildEngine())
	split.Offset = 0.24
	top := container.NewVBox(d.notice)
	bottom := container.NewVBox(widget.NewSeparator(), d.status)
	return container.NewBorder(top, bottom, nil, nil, split)
}

func (d *Dashboard) buildMachines() fyne.CanvasObject {
	d.machineList = widget.NewList(
		func() int { return len(d.snap.Machines) },
		func() fyne.CanvasObject {
			icon := canvas.NewImageFromResource(iconStopped)
			icon.SetMinSize(fyne.NewSize(14, 14))
			icon.FillMode = canvas.ImageFillContain
			return container.NewBorder(nil, nil, icon, widget.NewLabel("starting"), bold("machine"))
		},
		func(i widget.ListItemID, o fyne.CanvasObject) {
			if i >= len(d.snap.Machines) {
				return
			}
			mc := d.snap.Machines[i]
			row := o.(*fyne.Container)
			row.Objects[0].(*widget.Label).SetText(mc.Name)
			icon := row.Objects[1].(*canvas.Image)
			icon.Resource = StateIcon(mc)
			icon.Refresh()
			row.Objects[2].(*widget.Label).SetText(stateText(mc))
		})
	d.machineList.OnSelected = func(i widget.ListItemID) {
		if i < len(d.snap.Machines) {
			d.m.Select(d.snap.Machines[i].Name)
		}
	}

	d.mTitle = bold("")
	d.mTitle.SizeName = theme.SizeNameSubHeadingText
	d.mState, d.mCPUs, d.mMem = widget.NewLabel(""), widget.NewLabel(""), widget.NewLabel("")
	d.mDisk, d.mEngine, d.mForwards = widget.NewLabel(""), widget.NewLabel(""), widget.NewLabel("")
	d.mState.Wrapping = fyne.TextWrapWord
	form := container.New(layout.NewFormLayout(),
		bold("State"), d.mState,
		bold("CPUs"), d.mCPUs,
		bold("Memory"), d.mMem,
		bold("Disk"), d.mDisk,
		bold("Engine"), d.mEngine,
		bold("Ports"), d.mForwards,
	)
	d.mStart = widget.NewButtonWithIcon("Start", theme.MediaPlayIcon(), func() { d.machineAction(d.m.StartMachine) })
	d.mStop = widget.NewButtonWithIcon("Stop", theme.MediaStopIcon(), func() { d.machineAction(d.m.StopMachine) })
	d.mRestart = widget.NewButtonWithIcon("Restart", theme.ViewRefreshIcon(), func() { d.machineAction(d.m.RestartMachine) })
	d.mCopyEnv = widget.NewButtonWithIcon("Copy DOCKER_HOST", theme.ContentCopyIcon(), func() { d.copyEnv(d.snap.Selected) })
	d.mOpenLog = widget.NewButtonWithIcon("Agent log", theme.DocumentIcon(), func() { d.openAgentLog(d.snap.Selected) })
	actions := container.NewVBox(
		container.NewGridWithColumns(3, d.mStart, d.mStop, d.mRestart),
		container.NewGridWithColumns(2, d.mCopyEnv, d.mOpenLog),
	)
	details := container.NewVBox(widget.NewSeparator(), d.mTitle, form, actions)
	return container.NewBorder(bold("Machines"), details, nil, nil, d.machineList)
}

func (d *Dashboard) buildEngine() fyne.CanvasObject {
	d.engineErr = widget.NewLabel("")
	d.engineErr.Importance = widget.DangerImportance
	d.engineErr.Wrapping = fyne.TextWrapWord
	d.engineErr.Hide()

	// Containers.
	d.containerList = widget.NewList(
		func() int { return len(d.snap.Containers) },
		func() fyne.CanvasObject {
			return container.New(&columns{containerCols},
				truncLabel("name"), truncLabel("image"), truncLabel("state"),
				container.NewHBox(), truncLabel("status"))
		},
		func(i widget.ListItemID, o fyne.CanvasObject) {
			if i >= len(d.snap.Containers) {
				return
			}
			d.updateContainerRow(d.snap.Containers[i], o.(*fyne.Container))
		})
	d.containerList.OnSelected = func(i widget.ListItemID) {
		if i >= len(d.snap.Containers) {
			return
		}
		id := d.snap.Containers[i].ID
		if id == d.selContainer {
			return
		}
		d.selContainer = id
		d.m.FollowLogs(id)
		d.updateContainerButtons()
	}
	d.cStart = widget.NewButtonWithIcon("Start", theme.MediaPlayIcon(), func() { d.containerAction(engine.ActionStart) })
	d.cStop = widget.NewButtonWithIcon("Stop", theme.MediaStopIcon(), func() { d.containerAction(engine.ActionStop) })
	d.cRestart = widget.NewButtonWithIcon("Restart", theme.ViewRefreshIcon(), func() { d.containerAction(engine.ActionRestart) })
	d.cRemove = widget.NewButtonWithIcon("Remove", theme.DeleteIcon(), d.confirmRemoveContainer)
	d.cRemove.Importance = widget.DangerImportance
	toolbar := container.NewHBox(d.cStart, d.cStop, d.cRestart, d.cRemove, layout.NewSpacer(),
		widget.NewButtonWithIcon("Refresh", theme.ViewRefreshIcon(), d.m.Refresh))
	header := container.New(&columns{containerCols}, bold("Name"), bold("Image"), bold("State"), bold("Ports"), bold("Status"))
	containers := container.NewBorder(container.NewVBox(toolbar, header, widget.NewSeparator()), nil, nil, nil, d.containerList)

	d.logTitle = bold("Logs: select a container")
	d.logList = widget.NewList(
		func() int { return len(d.logLines) },
		func() fyne.CanvasObject {
			l := widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Monospace: true})
			l.Truncation = fyne.TextTruncateEllipsis
			return l
		},
		func(i widget.ListItemID, o fyne.CanvasObject) {
			if i >= len(d.logLines) {
				return
			}
			l := o.(*widget.Label)
			l.Importance = widget.MediumImportance
			if d.logLines[i].Stream != "stdout" {
				l.Importance = widget.WarningImportance
			}
			l.SetText(d.logLines[i].Text)
		})
	logs := container.NewBorder(d.logTitle, nil, nil, nil, d.logList)
	csplit := container.NewVSplit(containers, logs)
	csplit.Offset = 0.55

	// Images.
	d.imageList = widget.NewList(
		func() int { return len(d.snap.Images) },
		func() fyne.CanvasObject {
			return container.New(&columns{imageCols}, truncLabel("tag"), truncLabel("id"), truncLabel("size"), truncLabel("created"), truncLabel("used"))
		},
		func(i widget.ListItemID, o fyne.CanvasObject) {
			if i >= len(d.snap.Images) {
				return
			}
			im := d.snap.Images[i]
			row := o.(*fyne.Container).Objects
			row[0].(*widget.Label).SetText(im.Tag())
			row[1].(*widget.Label).SetText(shortID(im.ID))
			row[2].(*widget.Label).SetText(humanBytes(uint64(im.Size)))
			row[3].(*widget.Label).SetText(ago(time.Unix(im.Created, 0)))
			used := "unused"
			if im.Containers > 0 {
				used = fmt.Sprintf("%d container(s)", im.Containers)
			}
			row[4].(*widget.Label).SetText(used)
		})
	d.imageList.OnSelected = func(i widget.ListItemID) {
		if i < len(d.snap.Images) {
			d.selImage = d.snap.Images[i].ID
			d.iRemove.Enable()
		}
	}
	d.iRemove = widget.NewButtonWithIcon("Remove", theme.DeleteIcon(), d.confirmRemoveImage)
	d.iRemove.Importance = widget.DangerImportance
	d.iRemove.Disable()
	iheader := container.New(&columns{imageCols}, bold("Image"), bold("ID"), bold("Size"), bold("Created"), bold("Used by"))
	images := container.NewBorder(container.NewVBox(container.NewHBox(d.iRemove), iheader, widget.NewSeparator()), nil, nil, nil, d.imageList)

	d.tabs = container.NewAppTabs(
		container.NewTabItemWithIcon("Containers", theme.ListIcon(), csplit),
		container.NewTabItemWithIcon("Images", theme.StorageIcon(), images),
	)
	return container.NewBorder(d.engineErr, nil, nil, nil, d.tabs)
}

func (d *Dashboard) updateContainerRow(c engine.Container, row *fyne.Container) {
	o := row.Objects
	o[0].(*widget.Label).SetText(c.Name())
	o[1].(*widget.Label).SetText(c.Image)
	st := o[2].(*widget.Label)
	st.Importance = widget.MediumImportance
	switch c.State {
	case "running":
		st.Importance = widget.SuccessImportance
	case "dead", "restarting":
		st.Importance = widget.DangerImportance
	}
	st.SetText(c.State)
	ports := o[3].(*fyne.Container)
	ports.Objects = nil
	for _, p := range c.Published() {
		u := &url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", p.PublicPort), Path: "/"}
		text := fmt.Sprintf("%d→%d", p.PublicPort, p.PrivatePort)
		if p.Type != "tcp" {
			text += "/" + p.Type
		}
		h := widget.NewHyperlink(text, u)
		h.OnTapped = func() { d.openURL(u) }
		if p.Type != "tcp" { // nothing to browse on a udp port
			ports.Objects = append(ports.Objects, truncLabel(text))
			continue
		}
		ports.Objects = append(ports.Objects, h)
	}
	ports.Refresh()
	o[4].(*widget.Label).SetText(c.Status)
}

func stateText(mc model.Machine) string {
	if mc.Busy != "" {
		return mc.Busy + "…"
	}
	return string(mc.State)
}

// refresh redraws what changed. It runs on fyne's goroutine.
func (d *Dashboard) refresh(c model.Change) {
	d.snap = d.m.Snapshot()
	if c&model.ChangeMachines != 0 {
		d.machineList.Refresh()
		for i, mc := range d.snap.Machines {
			if mc.Name == d.snap.Selected {
				d.machineList.Select(i)
			}
		}
		d.updateDetails()
	}
	if c&model.ChangeContainers != 0 {
		d.containerList.Refresh()
		idx := -1
		for i, ct := range d.snap.Containers {
			if ct.ID == d.selContainer {
				idx = i
			}
		}
		if idx >= 0 {
			d.containerList.Select(idx)
		} else if d.selContainer != "" {
			d.selContainer = ""
			d.containerList.UnselectAll()
		}
		d.updateContainerButtons()
		d.engineErr.SetText(d.snap.EngineErr)
		if d.snap.EngineErr == "" {
			d.engineErr.Hide()
		} else {
			d.engineErr.Show()
		}
	}
	if c&model.ChangeImages != 0 {
		d.imageList.Refresh()
		found := false
		for i, im := range d.snap.Images {
			if im.ID == d.selImage {
				d.imageList.Select(i)
				found = true
			}
		}
		if !found {
			d.selImage = ""
			d.imageList.UnselectAll()
			d.iRemove.Disable()
		}
	}
	if c&model.ChangeLogs != 0 {
		id, lines := d.m.Logs()
		d.logLines = lines
		switch {
		case id == "":
			d.logTitle.SetText("Logs: select a container")
		default:
			d.logTitle.SetText("Logs of " + d.containerName(id) + " (following)")
		}
		d.logList.Refresh()
		d.logList.ScrollToBottom()
	}
	if c&model.ChangeMessage != 0 && d.snap.Message.Text != "" {
		msg := d.snap.Message
		d.status.Importance = widget.MediumImportance
		if msg.Error {
			d.status.Importance = widget.DangerImportance
		}
		d.status.SetText(msg.Time.Format("15:04:05") + "  " + strings.ReplaceAll(msg.Text, "\n", " | "))
	}
}

func (d *Dashboard) containerName(id string) string {
	for _, c := range d.snap.Containers {
		if c.ID == id {
			return c.Name()
		}
	}
	return shortID(id)
}

func (d *Dashboard) updateDetails() {
	mc, ok := d.snap.Machine(d.snap.Selected)
	if !ok {
		d.mTitle.SetText("No machine yet: create one with `skiff machine init`")
		for _, b := range []*widget.Button{d.mStart, d.mStop, d.mRestart, d.mCopyEnv, d.mOpenLog} {
			b.Disable()
		}
		return
	}
	d.mTitle.SetText(mc.Name)
	state := stateText(mc)
	if mc.Reason != "" && mc.State == machine.StateCrashed {
		state += ": " + mc.Reason
	}
	d.mState.SetText(state)
	d.mCPUs.SetText(fmt.Sprint(mc.CPUs))
	mem := humanBytes(uint64(mc.MemoryMiB) << 20)
	if mc.HostMemory > 0 {
		// What the machine costs the host now, which memory reclaim keeps below its size.
		mem += fmt.Sprintf(", %s in use on the host", humanBytes(mc.HostMemory))
	}
	d.mMem.SetText(mem)
	disk := fmt.Sprintf("%d GiB max", mc.DiskGiB)
	if mc.DiskBytes > 0 {
		disk = fmt.Sprintf("%s used of %s", humanBytes(mc.DiskUsed), humanBytes(mc.DiskBytes))
	}
	d.mDisk.SetText(disk)
	eng := "—"
	if mc.Engine != "" {
		eng = "Docker " + mc.Engine
	}
	d.mEngine.SetText(eng)
	var fw []string
	for _, f := range mc.Forwards {
		s := f.HostAddr + " (" + f.Proto + ")"
		if f.Error != "" {
			s += " ✗ " + f.Error
		}
		fw = append(fw, s)
	}
	if len(fw) == 0 {
		fw = []string{"—"}
	}
	d.mForwards.SetText(strings.Join(fw, "\n"))
	active := mc.Active() || mc.Busy != ""
	setEnabled(d.mStart, !active)
	setEnabled(d.mStop, mc.Active() && mc.Busy == "")
	setEnabled(d.mRestart, mc.Busy == "" && mc.State != machine.StateStopping)
	d.mCopyEnv.Enable()
	d.mOpenLog.Enable()
}

func (d *Dashboard) updateContainerButtons() {
	var sel *engine.Container
	for i := range d.snap.Containers {
		if d.snap.Containers[i].ID == d.selContainer {
			sel = &d.snap.Containers[i]
		}
	}
	running := sel != nil && sel.State == "running"
	setEnabled(d.cStart, sel != nil && !running)
	setEnabled(d.cStop, running)
	setEnabled(d.cRestart, sel != nil)
	setEnabled(d.cRemove, sel != nil)
}

func setEnabled(b *widget.Button, on bool) {
	if on {
		b.Enable()
	} else {
		b.Disable()
	}
}

// machineAction runs a machine action off the UI goroutine: starts take tens of seconds.
func (d *Dashboard) machineAction(fn func(context.Context, string) error) {
	name := d.snap.Selected
	if name == "" {
		return
	}
	go fn(d.ctx, name) // the model reports the outcome in the status bar
}

func (d *Dashboard) containerAction(a engine.Action) {
	id := d.selContainer
	if id == "" {
		return
	}
	go d.m.ContainerDo(d.ctx, id, a)
}

func (d *Dashboard) confirmRemoveContainer() {
	id := d.selContainer
	if id == "" {
		return
	}
	name := d.containerName(id)
	d.confirm = dialog.NewConfirm("Remove container",
		fmt.Sprintf("Remove container %q? It is stopped first if it runs; its data outside volumes is lost.", name),
		func(ok bool) {
			if ok {
				go d.m.ContainerDo(d.ctx, id, engine.ActionRemove)
			}
		}, d.win)
	d.confirm.SetConfirmText("Remove")
	d.confirm.SetConfirmImportance(widget.DangerImportance)
	d.confirm.Show()
}

func (d *Dashboard) confirmRemoveImage() {
	id := d.selImage
	if id == "" {
		return
	}
	tag := shortID(id)
	for _, im := range d.snap.Images {
		if im.ID == id {
			tag = im.Tag()
		}
	}
	d.confirm = dialog.NewConfirm("Remove image", fmt.Sprintf("Remove image %s?", tag), func(ok bool) {
		if ok {
			go d.m.RemoveImage(d.ctx, id)
		}
	}, d.win)
	d.confirm.SetConfirmText("Remove")
	d.confirm.SetConfirmImportance(widget.DangerImportance)
	d.confirm.Show()
}

func (d *Dashboard) openURL(u *url.URL) {
	if err := d.opt.OpenURL(u); err != nil {
		d.m.Fail(fmt.Errorf("open %s: %w", u, err))
	}
}

func (d *Dashboard) copyEnv(name string) {
	line, err := d.m.EnvLine(name)
	if err != nil {
		d.m.Fail(err)
		return
	}
	d.app.Clipboard().SetContent(strings.TrimSpace(line))
	d.m.Info("copied: " + strings.TrimSpace(line))
}

func (d *Dashboard) openAgentLog(name string) {
	p := d.m.AgentLog(name)
	if p == "" {
		return
	}
	d.openURL(fileURL(p))
}

// fileURL makes a file:// URL that works for Windows drive paths too.
func fileURL(p string) *url.URL {
	s := filepath.ToSlash(p)
	if !strings.HasPrefix(s, "/") {
		s = "/" + s
	}
	return &url.URL{Scheme: "file", Path: s}
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func humanBytes(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := uint64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}

func ago(t time.Time) string {
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d.Hours()))
	}
	return fmt.Sprintf("%d days ago", int(d.Hours()/24))
}
