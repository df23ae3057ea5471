// Package hostenv is Skiff's integration with the host at run time: the connections
// engine clients keep to a machine (the docker CLI's context, Podman's system connection:
// each a Client), the well-known engine socket (or pipe on Windows) and the shell lines
// that point clients at an engine. The lifecycle, the host agent and the tray use it; it
// imports nothing of Skiff's, so any layer may.
package hostenv
