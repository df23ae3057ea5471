package main

import (
	"slices"
	"testing"
)

func TestPick(t *testing.T) {
	for _, c := range []struct {
		argv     []string
		name     string
		wantArgv []string
	}{
		{[]string{"/usr/sbin/dockerd", "--debug"}, "dockerd", []string{"/usr/sbin/dockerd", "--debug"}},
		{[]string{"containerd", "--config", "x"}, "containerd", []string{"containerd", "--config", "x"}},
		// containerd runs the shim by name for its start and delete steps.
		{[]string{"containerd-shim-runc-v2", "-namespace", "moby", "start"}, shimName, []string{"containerd-shim-runc-v2", "-namespace", "moby", "start"}},
		// The shim's start runs the long-lived shim as the resolved file, whatever its name.
		{[]string{"/usr/sbin/dockerd", "-namespace", "moby", "-id", "x", "-address", "/run/c.sock"}, shimName,
			[]string{"/usr/sbin/dockerd", "-namespace", "moby", "-id", "x", "-address", "/run/c.sock"}},
		{[]string{"/opt/engine", "-namespace", "moby"}, shimName, []string{"/opt/engine", "-namespace", "moby"}},
		// By first argument.
		{[]string{"/opt/engine", "containerd", "--version"}, "containerd", []string{"containerd", "--version"}},
		// Nothing it knows.
		{[]string{"/opt/engine", "--help"}, "engine", []string{"/opt/engine", "--help"}},
		{[]string{"/opt/engine"}, "engine", []string{"/opt/engine"}},
	} {
		name, argv := pick(c.argv)
		if name != c.name || !slices.Equal(argv, c.wantArgv) {
			t.Errorf("pick(%q) = %q, %q; want %q, %q", c.argv, name, argv, c.name, c.wantArgv)
		}
	}
}
