package ui

import (
	"fmt"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/driver/desktop"

	"github.com/skiff-dev/skiff/gui/model"
	"github.com/skiff-dev/skiff/machine"
)

// Tray keeps the system tray menu and icon in step with the model.
type Tray struct {
	d       *Dashboard
	desk    desktop.App
	lastKey string
	lastInd model.Indicator
}

// InstallTray puts the tray icon and menu up and keeps them current. Closing the
// dashboard then only hides it: the tray is the app's lifetime.
func InstallTray(d *Dashboard, desk desktop.App) *Tray {
	t := &Tray{d: d, desk: desk, lastInd: -1}
	d.win.SetCloseIntercept(d.win.Hide)
	d.m.OnChange(func(c model.Change) {
		if c&model.ChangeMachines != 0 {
			d.opt.Schedule(t.update)
		}
	})
	t.update()
	return t
}

func (t *Tray) update() {
	snap := t.d.m.Snapshot()
	if ind := snap.Indicator(); ind != t.lastInd {
		t.desk.SetSystemTrayIcon(TrayIcon(ind))
		t.lastInd = ind
	}
	// Rebuilding an unchanged menu makes some trays flicker, so only do it on a change.
	key := menuKey(snap)
	if key == t.lastKey {
		return
	}
	t.lastKey = key
	t.desk.SetSystemTrayMenu(TrayMenu(snap, t.d))
}

func menuKey(s model.Snapshot) string {
	var b strings.Builder
	for _, m := range s.Machines {
		fmt.Fprintf(&b, "%s=%s/%s;", m.Name, m.State, m.Busy)
	}
	return b.String()
}

// TrayActions is what the tray menu's items do; the dashboard implements it.
type TrayActions interface {
	StartMachine(name string)
	StopMachine(name string)
	RestartMachine(name string)
	CopyEnv(name string)
	OpenAgentLog(name string)
	ShowDashboard()
	Quit()
}

// TrayMenu builds the tray menu for a snapshot: one submenu per machine, then the
// dashboard and quit. Quit leaves the machines running, and says so.
func TrayMenu(s model.Snapshot, a TrayActions) *fyne.Menu {
	var items []*fyne.MenuItem
	if len(s.Machines) == 0 {
		none := fyne.NewMenuItem("No machines (skiff machine init)", nil)
		none.Disabled = true
		items = append(items, none)
	}
	for _, m := range s.Machines {
		name := m.Name
		start := fyne.NewMenuItem("Start", func() { a.StartMachine(name) })
		stop := fyne.NewMenuItem("Stop", func() { a.StopMachine(name) })
		restart := fyne.NewMenuItem("Restart", func() { a.RestartMachine(name) })
		start.Disabled = m.Active() || m.Busy != ""
		stop.Disabled = !m.Active() || m.Busy != ""
		restart.Disabled = m.Busy != "" || m.State == machine.StateStopping
		copyEnv := fyne.NewMenuItem("Copy DOCKER_HOST", func() { a.CopyEnv(name) })
		logs := fyne.NewMenuItem("Open agent log", func() { a.OpenAgentLog(name) })
		item := fyne.NewMenuItem(fmt.Sprintf("%s — %s", name, stateText(m)), nil)
		item.Icon = StateIcon(m)
		item.ChildMenu = fyne.NewMenu(name, start, stop, restart, fyne.NewMenuItemSeparator(), copyEnv, logs)
		items = append(items, item)
	}
	dash := fyne.NewMenuItem("Open dashboard", a.ShowDashboard)
	quit := fyne.NewMenuItem("Quit tray (machines keep running)", a.Quit)
	quit.IsQuit = true
	items = append(items, fyne.NewMenuItemSeparator(), dash, fyne.NewMenuItemSeparator(), quit)
	return fyne.NewMenu("Skiff", items...)
}

// The dashboard carries out tray actions.
var _ TrayActions = (*Dashboard)(nil)

func (d *Dashboard) StartMachine(name string)   { go d.m.StartMachine(d.ctx, name) }
func (d *Dashboard) StopMachine(name string)    { go d.m.StopMachine(d.ctx, name) }
func (d *Dashboard) RestartMachine(name string) { go d.m.RestartMachine(d.ctx, name) }
func (d *Dashboard) CopyEnv(name string)        { d.copyEnv(name) }
func (d *Dashboard) OpenAgentLog(name string)   { d.openAgentLog(name) }

// ShowDashboard brings the window up.
func (d *Dashboard) ShowDashboard() {
	d.win.Show()
	d.win.RequestFocus()
}

// Quit ends the tray app only; machines are separate processes and keep running.
func (d *Dashboard) Quit() { d.app.Quit() }
