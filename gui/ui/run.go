package ui

import (
	"context"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/driver/desktop"

	"github.com/skiff-dev/skiff/gui/model"
)

// RunOptions chooses how the app presents itself.
type RunOptions struct {
	Dashboard Options
	// ShowDashboard opens the window at start even when a tray icon is available.
	ShowDashboard bool
	// NoTray skips the tray and runs the dashboard alone, as if no tray existed.
	NoTray bool
}

// Run shows the tray (or, with no tray, the dashboard) and blocks until the app quits.
// It never stops a machine: quitting only ends this process.
func Run(ctx context.Context, a fyne.App, m *model.Model, opt RunOptions) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go m.Run(ctx)
	d := NewDashboard(ctx, a, m, opt.Dashboard)
	desk, isDesk := a.(desktop.App)
	ok, why := TrayAvailable(ctx)
	switch {
	case opt.NoTray:
		ok, why = false, "the tray was turned off with --no-tray"
	case !isDesk:
		ok, why = false, "this fyne driver has no desktop tray support"
	}
	if ok {
		InstallTray(d, desk)
		if opt.ShowDashboard {
			d.win.Show()
		}
	} else {
		d.SetNotice("No system tray icon: " + why + ". This window stands in for it; closing it quits the tray app, and machines keep running.")
		d.win.SetMaster()
		d.win.Show()
	}
	a.Run()
}
