//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-dev/skiff/forward/guest"
	"github.com/skiff-dev/skiff/forward/transport"
	"github.com/skiff-dev/skiff/images/guestinit"
	"github.com/skiff-dev/skiff/images/seed"
)

// defaultVsockPort is the transport's vsock port when the seed names none
// (vmm/wsl2.DefaultTransportPort).
const defaultVsockPort = 1024

// parseWSLArgs reads boot-wsl's arguments as vmm/wsl2 passes them:
// --seed /mnt/c/.../seed.img --network user|wsl.
func parseWSLArgs(args []string) (guestinit.WSLOptions, error) {
	fs := flag.NewFlagSet("boot-wsl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o guestinit.WSLOptions
	network := fs.String("network", string(guestinit.WSLNetworkUser), "user (Skiff's network over vsock) or wsl (WSL's own)")
	fs.StringVar(&o.Seed, "seed", "", "the machine's seed file")
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("boot-wsl: %w", err)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("boot-wsl: unexpected argument %q", fs.Arg(0))
	}
	if o.Seed == "" {
		return o, errors.New("boot-wsl: --seed PATH is required")
	}
	switch o.Network = guestinit.WSLNetwork(*network); o.Network {
	case guestinit.WSLNetworkUser, guestinit.WSLNetworkWSL:
	default:
		return o, fmt.Errorf("boot-wsl: --network %q: want user or wsl", *network)
	}
	return o, nil
}

// bootWSL is `skiff-agent boot-wsl`: the engine and agent in a WSL distro, run by
// wsl.exe in the foreground for the machine's life. Its exit is the machine stopping:
// 0 after a clean stop, 1 when the boot failed.
func bootWSL(args []string) {
	if err := runWSL(args); err != nil {
		fmt.Fprintf(os.Stderr, "skiff-agent: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runWSL(args []string) error {
	o, err := parseWSLArgs(args)
	if err != nil {
		return err
	}
	ctx := context.Background()
	stopProfile := bootProfile()
	// Before the engine starts: WSL's terminate signals every process of the distro, and
	// the agent must be the one that stops the engine, in order.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP)
	sys, err := guestinit.Boot(ctx, guestinit.Options{WSL: &o, VsockNetwork: vsockNetwork(ctx)}, logf)
	if err != nil {
		// What the boot started must not outlive it: the distro stays up after the agent.
		guestinit.StopDescendants(5 * time.Second)
		return err
	}
	stop := make(chan struct{})
	s := wslSystem{system{sys}, sync.OnceFunc(func() { close(stop) })}
	lns, err := wslListeners(sys.Seed)
	if err != nil {
		sys.Shutdown(false)
		return err
	}
	guestIP, _, _ := strings.Cut(sys.Seed.Network.Address, "/")
	agent := &guest.Agent{
		EngineSocket:  guestinit.EngineSocket,
		EngineHandoff: guestinit.EngineHandoff,
		GuestIP:       guestIP,
		Exclude:       map[int]bool{22: true, sys.Seed.AgentPort: true},
		System:        s,
		Logf:          logf,
	}
	go guest.ServeTransport(ctx, lns, sys.Seed.Secret, agent.Route, logf)
	go announceWhenReady(ctx, sys, stopProfile)
	go trimLoop(sys, time.Duration(sys.Seed.TrimInterval)*time.Second)
	select {
	case sig := <-sigs:
		logf("%v: stopping the engine", sig)
		sys.Shutdown(false)
	case <-stop:
	}
	logf("stopped")
	return nil
}

// wslListeners are where the host reaches the agent: vsock (hvsock on WSL), and TCP on
// the seed's address when an interface has it (Skiff's network, or a stand-in's NIC).
func wslListeners(sd *seed.Seed) ([]net.Listener, error) {
	var lns []net.Listener
	port := sd.VsockPort
	if port == 0 {
		port = defaultVsockPort
	}
	vs, err := transport.ListenVsock(port)
	if err != nil {
		logf("transport: %v", err)
	} else {
		lns = append(lns, vs)
	}
	ip, _, _ := strings.Cut(sd.Network.Address, "/")
	tcp, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(sd.AgentPort)))
	switch {
	case err == nil:
		lns = append(lns, tcp)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		logf("transport: %s is on none of the distro's interfaces: vsock only", ip)
	default:
		logf("transport: %v", err)
	}
	if len(lns) == 0 {
		return nil, errors.New("the host can reach the agent neither on vsock nor on TCP")
	}
	return lns, nil
}

// wslSystem stops the agent, and with it the machine (wsl.exe returns), after Shutdown:
// a distro has no power to switch off.
type wslSystem struct {
	system
	stopped func() // once, however many shutdowns the host asks for
}

func (s wslSystem) Shutdown() {
	s.System.Shutdown(false)
	s.stopped()
}
