// Command engine is Skiff's Docker engine in one binary (issue 25, part 3): dockerd,
// containerd and containerd's runc shim, chosen by the name it is run as (the image links
// each name to it) or by its first argument. The three are Go programs that link the
// same libraries (containerd's client and plugins, grpc, protobuf, OpenTelemetry, the
// runtime spec); as separate files each carries its own copy, in one they share it.
//
// It is a module of its own so that Skiff's main module never depends on the daemon; it
// is built by images/enginebuild.sh.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/manager"
	ctrdcmd "github.com/containerd/containerd/v2/cmd/containerd/command"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"
	"github.com/moby/moby/v2/daemon/command"
	"github.com/moby/moby/v2/daemon/listeners"
	"github.com/moby/sys/reexec"
	"github.com/moby/term"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/skiff-dev/skiff/images/engine/handoff"

	// containerd's plugins, less those the build's tags leave out (enginebuild.sh).
	_ "github.com/containerd/containerd/v2/cmd/containerd/builtins"
	// The runc shim's task service.
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/task/plugin"
)

// shimName is the runc shim's name; containerd finds it on PATH by the runtime's name
// (io.containerd.runc.v2).
const shimName = "containerd-shim-runc-v2"

var commands = map[string]func() int{
	"dockerd":    runDockerd,
	"containerd": runContainerd,
	shimName:     runShim,
}

func main() {
	// dockerd's helpers that it runs as /proc/self/exe under their own names (chrootarchive's
	// untar, the mount helpers) come first, as in dockerd's own main.
	if reexec.Init() {
		return
	}
	name, args := pick(os.Args)
	run, ok := commands[name]
	if !ok {
		names := make([]string, 0, len(commands))
		for n := range commands {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "run as one of: %s\n", strings.Join(names, ", "))
		os.Exit(2)
	}
	os.Args = args
	os.Exit(run())
}

// pick picks the program to run from argv and returns the argv it sees.
//
// The shim's own start first: containerd runs `containerd-shim-runc-v2 ... start`, which
// starts the long-lived shim as os.Executable() (the resolved file, whatever its name)
// with the flags -namespace, -id, -address; no other program here takes a first argument
// of -namespace. Then by name, the link it was run by; then by first argument:
// `engine dockerd --debug`.
func pick(argv []string) (string, []string) {
	if len(argv) == 0 {
		return "", argv
	}
	if len(argv) > 1 && argv[1] == "-namespace" {
		return shimName, argv
	}
	name := filepath.Base(argv[0])
	if _, ok := commands[name]; ok {
		return name, argv
	}
	if len(argv) > 1 {
		if _, ok := commands[argv[1]]; ok {
			return argv[1], argv[1:]
		}
	}
	return name, argv
}

// runDockerd is dockerd's main (github.com/moby/moby/v2/cmd/dockerd).
func runDockerd() int {
	// SIGPIPE from a restarted log reader must not end the daemon (moby/moby#19728).
	signal.Ignore(syscall.SIGPIPE)
	_, stdout, stderr := term.StdStreams()
	serveHandedOver(stderr)
	r, err := command.NewDaemonRunner(stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := r.Run(context.Background()); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

// serveHandedOver makes dockerd serve, beside its unix socket, the API streams Skiff's
// guest agent hands over (package handoff), when the guest names the socket to take them
// on. Without it the agent copies each stream to the unix socket, so a failure here
// costs speed only: it is logged and the daemon starts.
func serveHandedOver(stderr io.Writer) {
	path := os.Getenv(handoff.Env)
	if path == "" {
		return
	}
	os.Unsetenv(handoff.Env)
	listeners.Extra = func(proto, _ string) ([]net.Listener, error) {
		if proto != "unix" || path == "" {
			return nil, nil
		}
		l, err := handoff.Listen(path)
		path = ""
		if err != nil {
			fmt.Fprintf(stderr, "engine: API streams are copied by the guest agent, not handed over: %v\n", err)
			return nil, nil
		}
		return []net.Listener{l}, nil
	}
}

// runContainerd is containerd's main (github.com/containerd/containerd/v2/cmd/containerd).
func runContainerd() int {
	forgetGRPCServerMetrics()
	keepPlugins(func(r *plugin.Registration) bool { return r.Type != plugins.TTRPCPlugin })
	if err := ctrdcmd.App().Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "containerd:", err)
		return 1
	}
	return 0
}

// forgetGRPCServerMetrics drops the gRPC server counters that swarmkit's older
// go-grpc-prometheus registers in prometheus' default registry when it is linked in (its
// init, for dockerd): containerd's grpc-prometheus plugin registers its own under the same
// names there and panics on the duplicate. They are dockerd's, unused in containerd.
// Unregister matches a collector by its metrics' names (and constant labels, none here).
func forgetGRPCServerMetrics() {
	for _, n := range []string{"grpc_server_started_total", "grpc_server_handled_total",
		"grpc_server_msg_received_total", "grpc_server_msg_sent_total"} {
		prometheus.Unregister(prometheus.NewCounterVec(prometheus.CounterOpts{Name: n, Help: n}, nil))
	}
}

// keepPlugins leaves in containerd's plugin registry only the registrations keep says
// yes to. containerd and its shim share one registry, filled by the imports' init: the
// shim initialises every plugin in it (containerd's metadata store, snapshotters and
// servers included), and containerd serves every ttrpc plugin (the shim's task service)
// on its own socket. The shim's only plugin is its task service (type
// io.containerd.ttrpc.v1); containerd has none of that type in this build (its tracing
// plugin, the one other, is left out by the no_tracing tag).
func keepPlugins(keep func(*plugin.Registration) bool) {
	regs := registry.Graph(func(r *plugin.Registration) bool { return !keep(r) })
	registry.Reset()
	for i := range regs {
		registry.Register(&regs[i])
	}
}

// runShim is the runc shim's main (cmd/containerd-shim-runc-v2); it exits by itself.
func runShim() int {
	keepPlugins(func(r *plugin.Registration) bool { return r.Type == plugins.TTRPCPlugin })
	shim.RunShim(context.Background(), manager.NewShimManager("io.containerd.runc.v2"))
	return 0
}
