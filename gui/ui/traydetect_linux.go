//go:build linux

package ui

import (
	"context"
	"time"

	"github.com/godbus/dbus/v5"
)

// watcherName is the D-Bus name of the StatusNotifier host fyne's tray registers with;
// without it (plain X11 window managers, GNOME without the AppIndicator extension) a
// tray icon would silently never appear.
const watcherName = "org.kde.StatusNotifierWatcher"

// TrayAvailable reports whether a tray icon would be seen, and if not, why.
func TrayAvailable(ctx context.Context) (bool, string) {
	conn, err := dbus.SessionBus()
	if err != nil {
		return false, "no session D-Bus (" + err.Error() + ")"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var has bool
	err = conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, watcherName).Store(&has)
	if err != nil {
		return false, "cannot ask the session D-Bus for " + watcherName + " (" + err.Error() + ")"
	}
	if !has {
		return false, "the desktop has no StatusNotifier host (" + watcherName + " is not on the session D-Bus)"
	}
	return true, ""
}
