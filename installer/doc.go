// Package installer fits Skiff into the host's login and package managers: the login
// hook that starts a machine (systemd user unit, launchd agent, scheduled task) and the
// packages (deb, Homebrew formula, MSI source). What runs at run time (docker context,
// well-known socket) is hostenv's; the commands are the CLI's.
package installer
