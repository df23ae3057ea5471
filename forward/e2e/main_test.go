//go:build linux

// Package e2e proves the data plane with real clients: the docker CLI, compose, plain TCP
// and UDP sockets, and bind mounts, against one real machine under QEMU. Run with SKIFF_E2E=1.
package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/skiff-dev/skiff/machine/machinetest"
)

// suite is the machine shared by the tests of this package: booting one per test would
// cost a minute each under TCG.
type suite struct {
	*machinetest.Env
	// extraHost is shared at extraGuest, a different path, to exercise translation.
	extraHost, extraGuest string
	homeDir               string // a scratch folder inside the default home share
	roDir                 string // shared read-only at /mnt/ro-view
}

var s *suite

func TestMain(m *testing.M) {
	code := m.Run()
	if code != 0 && s != nil {
		// The tests share one machine, so its logs are printed once, here.
		fmt.Fprint(os.Stderr, s.LogText())
	}
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	machinetest.RemoveBin()
	if s != nil {
		os.RemoveAll(s.homeDir)
		os.RemoveAll(s.extraHost)
		os.RemoveAll(s.roDir)
	}
	os.Exit(code)
}

// machine boots the shared machine on first use.
func machine(t *testing.T) *suite {
	t.Helper()
	if s == nil {
		boot(t)
	}
	// Failures belong to the test that is running, not to the one that booted.
	c := *s
	env := *s.Env
	env.T = t
	c.Env = &env
	return &c
}

func boot(t *testing.T) {
	env := machinetest.New(suiteT{t})
	home, _ := os.UserHomeDir()
	scratch, err := os.MkdirTemp(home, ".skiff-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	extra, err := os.MkdirTemp("", "skiffshare")
	if err != nil {
		t.Fatal(err)
	}
	ro, err := os.MkdirTemp("", "skiffro")
	if err != nil {
		t.Fatal(err)
	}
	s = &suite{Env: env, extraHost: extra, extraGuest: "/mnt/elsewhere", homeDir: scratch, roDir: ro}
	env.Must("machine", "init", "--cpus", "2", "--memory", "2G", "--disk-size", "16G",
		"--mount", extra+":/mnt/elsewhere", "--mount", ro+":/mnt/ro-view:ro")
	env.Must("machine", "start")
	env.LoadBusybox("default")
}

// suiteT outlives the first test: cleanup runs when the test binary is done with the
// package, not when the first test that booted the machine returns.
type suiteT struct{ *testing.T }

func (st suiteT) Cleanup(f func()) { cleanups = append(cleanups, f) }
func (st suiteT) TempDir() string {
	d, _ := os.MkdirTemp("", "skiffe2e")
	cleanups = append(cleanups, func() { os.RemoveAll(d) })
	return d
}

var cleanups []func()
