// Command skiff-tray is Skiff's optional tray app and container dashboard. It is a pure
// client of the machines' host agents and engines: quitting or crashing it leaves every
// machine as it was.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/app"

	"github.com/skiff-dev/skiff/gui/fake"
	"github.com/skiff-dev/skiff/gui/model"
	"github.com/skiff-dev/skiff/gui/ui"
	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/machine/backends"
)

func main() {
	var (
		home      = flag.String("home", "", "Skiff home directory (default: $SKIFF_HOME or the OS default)")
		dashboard = flag.Bool("dashboard", false, "open the dashboard window at start")
		noTray    = flag.Bool("no-tray", false, "run the dashboard alone, without a tray icon")
		demo      = flag.Bool("demo", false, "show fake machines and containers (for screenshots and layout work)")
		width     = flag.Int("width", 1280, "dashboard width")
		height    = flag.Int("height", 760, "dashboard height")
	)
	flag.Parse()
	if err := run(*home, *demo, ui.RunOptions{
		ShowDashboard: *dashboard, NoTray: *noTray,
		Dashboard: ui.Options{Size: fyne.NewSize(float32(*width), float32(*height))},
	}); err != nil {
		fmt.Fprintln(os.Stderr, "skiff-tray:", err)
		os.Exit(1)
	}
}

func run(homeDir string, demo bool, opt ui.RunOptions) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var (
		src     model.Source
		starter model.Starter
	)
	if demo {
		dir, err := fake.ShortTempDir()
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		fs := fake.NewSource(dir)
		defer fs.Close()
		if err := fake.Demo(fs); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		src, starter = fs, &fake.Starter{Src: fs}
	} else {
		home, err := machine.DefaultHome()
		if homeDir != "" {
			abs, aerr := filepath.Abs(homeDir)
			home, err = machine.Home{Root: abs}, aerr
		}
		if err != nil {
			return fmt.Errorf("skiff home: %w", err)
		}
		mgr := &machine.Manager{Home: home, Backend: backends.Lookup}
		// A missing CLI is reported when the user tries to start a machine, not now:
		// everything else works without it.
		if cli, err := model.FindCLI(); err == nil {
			mgr.Agent = []string{cli, "hostagent"}
		}
		src, starter = model.HomeSource{Home: home}, model.ManagerStarter{Manager: mgr}
	}
	a := app.NewWithID("dev.skiff.tray")
	m := model.New(src, starter, model.Options{})
	go func() {
		<-ctx.Done()
		fyne.Do(a.Quit)
	}()
	ui.Run(ctx, a, m, opt)
	return nil
}
