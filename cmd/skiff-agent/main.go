//go:build linux

// Command skiff-agent is the guest side of Skiff. It is the guest's init (stage 1 from the
// initrd, stage 2 as PID 1 in the root) and the agent that answers the host's streams.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-dev/skiff/forward"
	"github.com/skiff-dev/skiff/forward/guest"
	"github.com/skiff-dev/skiff/forward/transport"
	"github.com/skiff-dev/skiff/images/guestinit"
	"github.com/skiff-dev/skiff/images/seed"
)

// version is set by the build.
var version = "dev"

func main() {
	mode := ""
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	if os.Getpid() == 1 && (os.Args[0] == "/init" || len(os.Args) < 2) {
		if err := guestinit.Stage1(); err != nil {
			fmt.Fprintf(os.Stderr, "skiff-init: stage 1 failed: %v\n", err)
			halt()
		}
		mode = "boot"
	}
	switch mode {
	case "boot", "service":
		err := run(mode == "boot")
		fmt.Fprintf(os.Stderr, "skiff-agent: %v\n", err)
		if os.Getpid() == 1 {
			halt()
		}
		os.Exit(1)
	case "boot-wsl":
		bootWSL(os.Args[2:])
	case "version":
		fmt.Println(version)
	default:
		fmt.Fprintln(os.Stderr, "usage: skiff-agent boot|service|version (it runs inside the Skiff VM)")
		os.Exit(2)
	}
}

// halt powers off rather than letting PID 1 exit, which would panic the kernel.
func halt() {
	time.Sleep(time.Second)
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%8.3f] skiff-agent: %s\n", guestinit.Uptime(), fmt.Sprintf(format, args...))
}

func run(pid1 bool) error {
	ctx := context.Background()
	stopProfile := bootProfile()
	go profileOnSignal()
	sys, err := guestinit.Boot(ctx, guestinit.Options{PID1: pid1, VsockNetwork: vsockNetwork(ctx)}, logf)
	if err != nil {
		return err
	}
	sd := sys.Seed
	guestIP, _, _ := strings.Cut(sd.Network.Address, "/")
	agent := &guest.Agent{
		EngineSocket:  guestinit.EngineSocket,
		EngineHandoff: guestinit.EngineHandoff,
		GuestIP:       guestIP,
		Exclude:       map[int]bool{22: true, sd.AgentPort: true},
		System:        system{sys},
		Logf:          logf,
		FileEvents:    fileEvents(sd).Serve,
	}
	lns, err := transportListeners(guestIP, sd)
	if err != nil {
		return err
	}
	go guest.ServeTransport(ctx, lns, sd.Secret, agent.Route, logf)
	if pid1 {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGPWR)
		go func() {
			<-sigs
			sys.Shutdown(true)
		}()
	}
	go announceWhenReady(ctx, sys, stopProfile)
	go trimLoop(sys, time.Duration(sd.TrimInterval)*time.Second)
	select {}
}

// vsockNetwork runs the frames-over-vsock network helper for the seed's port.
func vsockNetwork(ctx context.Context) guestinit.NetworkHelper {
	return func(sd *seed.Seed, configure func(iface string) error) error {
		return guest.RunNetHelper(ctx, guest.NetHelperOptions{CID: transport.HostCID, Port: sd.Network.VsockPort,
			Secret: sd.Secret, Configure: configure, Logf: logf})
	}
}

// transportListeners are where the host reaches the agent: the guest's address on the
// user-mode network, and vsock wherever the kernel has it (vz, Hyper-V, WSL2, QEMU with
// vhost-vsock). Which one the host uses is its choice; both check the machine's secret.
func transportListeners(guestIP string, sd *seed.Seed) ([]net.Listener, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(guestIP, strconv.Itoa(sd.AgentPort)))
	if err != nil {
		return nil, fmt.Errorf("listen for the host: %w", err)
	}
	lns := []net.Listener{ln}
	port := sd.VsockPort
	if port == 0 {
		port = uint32(sd.AgentPort)
	}
	if vl, err := transport.ListenVsock(port); err != nil {
		// Where the VM has a vsock device its host reaches the agent only there (vz,
		// Hyper-V, QEMU with vhost-vsock): failing the boot puts the reason on the console,
		// which the host shows, instead of a start that times out.
		if transport.VsockDevice() {
			return nil, fmt.Errorf("transport: the VM has a vsock device but the agent cannot listen on it: %w", err)
		}
		logf("transport: no vsock (%v); serving on %s only", err, ln.Addr())
	} else {
		lns = append(lns, vl)
		logf("transport: serving on %s and vsock port %d", ln.Addr(), port)
	}
	return lns, nil
}

// announceWhenReady tells the host once the engine answers; answered runs first (the boot
// profile's end).
func announceWhenReady(ctx context.Context, sys *guestinit.System, answered func()) {
	api, err := guestinit.WaitEngine(ctx)
	if err != nil {
		logf("engine: %v", err)
		return
	}
	up := guestinit.Uptime()
	logf("engine %s answers (API %s)", sys.Seed.Engine, api)
	answered()
	// The host first: what EndBoot starts (bpffs) would delay the news by its CPU time.
	guest.AnnounceReady(ctx, sys.Host, forward.Ready{EngineAPI: api, BootMillis: int64(up * 1000), AgentVersion: version, Warnings: sys.Warnings()}, logf)
	sys.EndBoot()
}

// bootProfile records the agent's own CPU use until the engine answers when the boot is
// traced: the agent is one of the three processes that share the emulated CPUs at boot.
func bootProfile() (stop func()) {
	if !guestinit.Tracing() {
		return func() {}
	}
	f, err := os.Create(BootProfilePath)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		logf("boot profile: %v", err)
		return func() {}
	}
	return sync.OnceFunc(func() { pprof.StopCPUProfile(); f.Close() })
}

// BootProfilePath is where a traced boot leaves the agent's CPU profile.
const BootProfilePath = "/run/skiff-agent-boot.pprof"

// trimLoop returns freed blocks to the host: once soon after boot, then on a schedule.
func trimLoop(sys *guestinit.System, every time.Duration) {
	if every <= 0 {
		every = time.Hour
	}
	// Not during boot: a fresh data disk is sparse already, and trimming competes with the
	// engine's start for the (emulated) CPU.
	time.Sleep(10 * time.Minute)
	for {
		if out, err := sys.Trim(); err != nil {
			logf("trim: %v", err)
		} else {
			logf("trim: %s", out)
		}
		time.Sleep(every)
	}
}

type system struct{ *guestinit.System }

func (s system) SetClock(t time.Time) time.Duration { return guestinit.SetClock(t, logf) }
func (s system) Shutdown()                          { s.System.Shutdown(os.Getpid() == 1) }

func (s system) Info(ctx context.Context) forward.GuestInfo {
	var u unix.Utsname
	unix.Uname(&u)
	var st unix.Statfs_t
	unix.Statfs(guestinit.DataMount, &st)
	api, _ := guestinit.EngineReady(ctx)
	return forward.GuestInfo{
		Kernel:        unix.ByteSliceToString(u.Release[:]),
		EngineAPI:     api,
		DataDiskBytes: st.Blocks * uint64(st.Bsize),
		DataDiskUsed:  (st.Blocks - st.Bfree) * uint64(st.Bsize),
		UptimeSeconds: int64(guestinit.Uptime()),
	}
}
