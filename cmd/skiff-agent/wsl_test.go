//go:build linux

package main

import (
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/images/guestinit"
	"github.com/skiff-dev/skiff/vmm/wsl2"
)

// The agent takes exactly what the wsl2 backend passes it.
func TestParseWSLArgsFromBackend(t *testing.T) {
	for _, mode := range []wsl2.NetworkMode{wsl2.NetworkUser, wsl2.NetworkWSL} {
		cmd := wsl2.AgentCommand("/mnt/c/Users/me/.skiff/dev/seed.img", mode)
		if cmd[0] != wsl2.AgentPath || cmd[1] != "boot-wsl" {
			t.Fatalf("wsl2 runs %v, not boot-wsl", cmd)
		}
		o, err := parseWSLArgs(cmd[2:])
		if err != nil {
			t.Fatalf("%v: %v", cmd, err)
		}
		if o.Seed != "/mnt/c/Users/me/.skiff/dev/seed.img" || string(o.Network) != string(mode) {
			t.Errorf("%v parsed as %+v", cmd, o)
		}
	}
}

func TestParseWSLArgs(t *testing.T) {
	o, err := parseWSLArgs([]string{"--seed", "/mnt/d/s.img"})
	if err != nil || o.Network != guestinit.WSLNetworkUser {
		t.Errorf("without --network: %+v, %v; want the user network", o, err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "--seed PATH is required"},
		{[]string{"--seed", "/mnt/c/s.img", "--network", "nat"}, `--network "nat"`},
		{[]string{"--seed", "/mnt/c/s.img", "extra"}, `unexpected argument "extra"`},
		{[]string{"--seed"}, "flag needs an argument"},
		{[]string{"--bogus"}, "not defined"},
	} {
		_, err := parseWSLArgs(c.args)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseWSLArgs(%q) = %v; want an error with %q", c.args, err, c.want)
		}
	}
}
