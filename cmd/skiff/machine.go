package main

import (
	"github.com/skiff-dev/skiff/cmd/internal/hostcmd"

	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-dev/skiff/images"
	"github.com/skiff-dev/skiff/installer/hostenv"
	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/machine/agentapi"
	"github.com/skiff-dev/skiff/machine/backends"
)

func machineCmd(opts hostcmd.Options) *cobra.Command {
	c := &cobra.Command{Use: "machine", Short: "Manage Skiff machines", Aliases: []string{"m"}}
	c.AddCommand(initCmd(), startCmd(), stopCmd(), rmCmd(), listCmd(), inspectCmd(), sshCmd(), envCmd(), setCmd(opts), logsCmd(),
		hostcmd.NewAutostart(opts))
	return c
}

// manager is the lifecycle over Skiff's home on this host, with opts' autostart.
func manager(opts hostcmd.Options) (*machine.Manager, error) {
	h, err := opts.HomeDir()
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return &machine.Manager{Home: h, Backend: backends.Lookup, Agent: []string{self, "hostagent"},
		Autostart: func(ctx context.Context, name string, on bool) error {
			return opts.ApplyAutostart(ctx, name, on)
		}}, nil
}

// nameArg returns the machine named on the command line, or the default one.
func nameArg(args []string) string {
	if len(args) > 0 {
		return args[0]
	}
	return machine.DefaultName
}

// completeMachines offers existing machine names to shell completion.
func completeMachines(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	h, err := machine.DefaultHome()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	names, _ := h.List()
	return names, cobra.ShellCompDirectiveNoFileComp
}

// perMachine makes c a `machine VERB [NAME]` command: run gets the lifecycle and the
// machine named (the default one without a name).
func perMachine(c *cobra.Command, opts hostcmd.Options, run func(cmd *cobra.Command, m *machine.Manager, name string) error) *cobra.Command {
	c.Args = cobra.MaximumNArgs(1)
	c.ValidArgsFunction = completeMachines
	c.RunE = func(cmd *cobra.Command, args []string) error {
		m, err := manager(opts)
		if err != nil {
			return err
		}
		return run(cmd, m, nameArg(args))
	}
	return c
}

func initCmd() *cobra.Command {
	var (
		cpus                  int
		memory, disk, imgRef  string
		engine, backend, bind string
		shareType             string
		mounts                []string
		now, noHome           bool
		noHostLoopback        bool
		noFileEvents          bool
		switchContext         bool
		memoryReclaim         string
		networkGroup          string
		kubernetes            bool
	)
	c := &cobra.Command{
		Use:   "init [NAME]",
		Short: "Create a machine",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := manager(hostcmd.Options{})
			if err != nil {
				return err
			}
			name := nameArg(args)
			memMiB, err := machine.ParseSize(memory)
			if err != nil {
				return machine.ErrInvalidf("--memory: %v", err)
			}
			diskMiB, err := machine.ParseSize(disk)
			if err != nil {
				return machine.ErrInvalidf("--disk-size: %v", err)
			}
			spec := &machine.Spec{Name: name, Backend: backend, CPUs: cpus, MemoryMiB: memMiB,
				DiskGiB: diskMiB / 1024, Engine: machine.Engine(engine), PortBindAddress: bind, ShareType: shareType,
				NoHostLoopback: noHostLoopback, SwitchContext: switchContext, MemoryReclaim: memoryReclaim, NoFileEvents: noFileEvents,
				NetworkGroup: networkGroup, Kubernetes: kubernetes}
			if !noHome {
				if hd, err := os.UserHomeDir(); err == nil {
					spec.Mounts = append(spec.Mounts, machine.Mount{HostPath: hd, GuestPath: machine.GuestPathFor(hd)})
				}
			}
			for _, mt := range mounts {
				mount, err := machine.ParseMount(mt)
				if err != nil {
					return machine.ErrInvalidf("%v", err)
				}
				spec.Mounts = append(spec.Mounts, mount)
			}
			if imgRef == "" {
				imgRef = defaultImage()
			}
			inst, err := m.Init(cmd.Context(), spec, machine.InitOptions{Image: imgRef, Progress: os.Stderr})
			if err != nil {
				return err
			}
			if inst.Unpinned {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: the image URL was not pinned: trusting the server's manifest %s; pin it with --image %s@%s\n", inst.Digest, imgRef, inst.Digest)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Machine %q created (%d CPUs, %dMiB memory, %dGiB disk, %s, image %s).\n",
				name, spec.CPUs, spec.MemoryMiB, spec.DiskGiB, spec.Engine, inst.Manifest.Version)
			if now {
				return startMachine(cmd.Context(), out, m, name, machine.StartOptions{})
			}
			fmt.Fprintf(out, "Start it with: skiff machine start%s\n", nameSuffix(name))
			return nil
		},
	}
	f := c.Flags()
	f.IntVar(&cpus, "cpus", 2, "number of virtual CPUs")
	f.StringVar(&memory, "memory", "2G", "memory, e.g. 2048M or 4G")
	f.StringVar(&disk, "disk-size", "64G", "maximum size of the data disk (sparse: it uses only what is written)")
	f.StringVar(&imgRef, "image", "", "guest image: a directory or manifest path, or an http(s) URL, optionally @sha256:DIGEST")
	f.StringVar(&engine, "engine", "docker", "container engine: docker or podman")
	f.StringVar(&backend, "backend", backends.Default(), "hypervisor backend")
	f.StringVar(&bind, "port-bind-address", "", "host address published ports bind to (default 127.0.0.1)")
	f.StringVar(&shareType, "share-type", "", "how folders are shared: 9p, virtiofs or 9p-transport (default: the backend's best)")
	f.StringArrayVar(&mounts, "mount", nil, "share a host folder: HOST[:GUEST][:ro] (repeatable)")
	f.BoolVar(&noHome, "no-home-share", false, "do not share the home directory")
	f.BoolVar(&now, "now", false, "start the machine after creating it")
	f.BoolVar(&noHostLoopback, "no-host-loopback", false, "containers cannot reach the host's loopback services (host.docker.internal)")
	f.BoolVar(&noFileEvents, "no-file-events", false, "do not raise host file changes as inotify events in the VM (9p and virtiofs shares)")
	f.BoolVar(&switchContext, "switch-context", false, "make the machine's docker context the current one on every start, even over one you chose")
	f.StringVar(&memoryReclaim, "memory-reclaim", "", memoryReclaimHelp)
	f.StringVar(&networkGroup, "network-group", "", networkGroupHelp)
	f.BoolVar(&kubernetes, "kubernetes", false, kubernetesHelp)
	return c
}

// memoryReclaimHelp is --memory-reclaim's help, for init and set.
const memoryReclaimHelp = "how unused guest memory goes back to the host: balloon, free-page-reporting, dynamic-memory or off (default: the backend's best)"

func nameSuffix(name string) string {
	if name == machine.DefaultName {
		return ""
	}
	return " " + name
}

// defaultImage is the image used without --image: SKIFF_IMAGE, else the build's default.
func defaultImage() string {
	if v := os.Getenv("SKIFF_IMAGE"); v != "" {
		return v
	}
	return images.DefaultRef
}

func startCmd() *cobra.Command {
	var o machine.StartOptions
	c := &cobra.Command{Use: "start [NAME]", Short: "Start a machine; returns when its engine answers"}
	perMachine(c, hostcmd.Options{}, func(cmd *cobra.Command, m *machine.Manager, name string) error {
		return startMachine(cmd.Context(), cmd.OutOrStdout(), m, name, o)
	})
	c.Flags().BoolVar(&o.SwitchContext, "switch-context", false, "make the machine's docker context the current one, even over one you chose")
	return c
}

// startMachine starts a machine and says how it went.
func startMachine(ctx context.Context, out io.Writer, m *machine.Manager, name string, o machine.StartOptions) error {
	started := false
	o.Progress = func(p machine.Phase) {
		switch {
		case p.Message != "":
			fmt.Fprintf(out, "Machine %q %s.\n", name, p.Message)
		case !started:
			started = true
			fmt.Fprintf(out, "Starting machine %q:", name)
			fallthrough
		default:
			fmt.Fprintf(out, " %s", p.Phase)
		}
	}
	res, err := m.Start(ctx, name, o)
	if started {
		fmt.Fprintln(out)
	}
	if err != nil {
		return err
	}
	if res.AlreadyRunning {
		fmt.Fprintf(out, "Machine %q is already running.\n", name)
		sayContext(out, res)
		return nil
	}
	how := startPhases(res.State)
	if boot := res.State.Boot; boot != nil && boot.Warm {
		how = " (resumed from its saved state)"
	}
	fmt.Fprintf(out, "Machine %q running after %s%s.\n", name, res.Took.Round(100*time.Millisecond), how)
	if vm := res.State.VM; vm["accel"] == "tcg" && vm["accelReason"] != "" {
		fmt.Fprintf(out, "note: no hardware acceleration (software emulation, slow): %s\n", vm["accelReason"])
	}
	for _, w := range res.State.Warnings {
		fmt.Fprintf(out, "warning: %s\n", w)
	}
	fmt.Fprintf(out, "Engine (%s) socket: %s\n", res.State.Engine, res.Engine)
	if _, spec, err := m.Machine(name); err == nil && spec.Kubernetes {
		fmt.Fprintf(out, "Kubernetes starts in the background: kubectl --context %s get nodes once the host agent has merged its kubeconfig (skiff machine logs%s says when).\n",
			machine.KubeName(name), nameSuffix(name))
	}
	if !sayContext(out, res) {
		fmt.Fprintf(out, "Use it with:  docker --context %s ps\n", res.Context)
		fmt.Fprintf(out, "         or:  export DOCKER_HOST=%s\n", hostenv.EngineHost(res.Engine))
	}
	return nil
}

// startPhases splits a cold start's time where it went: the agent's setup (image check,
// disks), starting the VM (the accelerator probe, the hypervisor and firmware, until the
// guest kernel ran), and the guest's boot up to its engine answering (its own uptime).
func startPhases(st *agentapi.State) string {
	if st == nil || st.VMStartedAt == nil || st.ReadyAt == nil {
		return ""
	}
	r := func(d time.Duration) time.Duration { return d.Round(100 * time.Millisecond) }
	guest := time.Duration(st.GuestBootMS) * time.Millisecond
	hv := max(st.ReadyAt.Sub(*st.VMStartedAt)-guest, 0)
	accel := st.VM["accel"]
	if accel == "" {
		accel = st.Backend
	}
	return fmt.Sprintf(": setup %s, VM start %s, guest boot to engine %s (%s)",
		r(st.VMStartedAt.Sub(st.StartedAt)), r(hv), r(guest), accel)
}

// sayContext says in one line what became of docker's current context, and whether
// plain `docker` now reaches the machine.
func sayContext(out io.Writer, res *machine.StartResult) (current bool) {
	sw := res.Switch
	switch {
	case res.ContextErr != nil:
		fmt.Fprintf(out, "warning: %v\n", res.ContextErr)
	case sw.Switched:
		fmt.Fprintf(out, "Docker's current context is now %q (was %q; stop or rm puts it back): plain `docker` uses this machine.\n", res.Context, sw.Previous)
		return true
	case sw.Kept:
		fmt.Fprintf(out, "Docker's current context is unchanged: %s.\n", sw.Why)
	default: // it already was
		return !res.AlreadyRunning
	}
	return false
}

func stopCmd() *cobra.Command {
	var force, cold bool
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "stop [NAME]",
		Short: "Stop a machine: suspend it for a warm start, or shut it down (--cold)",
		Long: `Stop a machine. By default the VM is suspended: the guest flushes its disks, and the
VM's memory and devices are saved next to them, so that the next start resumes in about a
second with containers still running. --cold shuts the guest down (engine stop, sync,
power off) and discards any saved state; so does --force, without asking the guest.`,
	}
	perMachine(c, hostcmd.Options{}, func(cmd *cobra.Command, m *machine.Manager, name string) error {
		res, err := m.Stop(cmd.Context(), name, agentapi.StopRequest{Force: force, Cold: cold || force, Timeout: timeout})
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		switch {
		case res.Discarded:
			fmt.Fprintf(out, "Machine %q was suspended; its saved state is discarded and the next start boots.\n", name)
		case res.AlreadyStopped:
			fmt.Fprintf(out, "Machine %q is already stopped.\n", name)
		case res.Recovered:
			fmt.Fprintf(out, "Machine %q had crashed; marked stopped.\n", name)
		case res.Saved != nil:
			fmt.Fprintf(out, "Machine %q suspended (saved state: %s); start resumes it, stop --cold discards it.\n", name, humanBytes(res.Saved.SizeBytes))
		default:
			if res.NotSuspended != "" {
				fmt.Fprintf(out, "Could not suspend: %s.\n", res.NotSuspended)
			}
			fmt.Fprintf(out, "Machine %q stopped.\n", name)
		}
		switch {
		case res.ContextErr != nil:
			fmt.Fprintf(cmd.ErrOrStderr(), "warning: %v\n", res.ContextErr)
		case res.RestoredContext != "":
			fmt.Fprintf(out, "Docker's current context is %q again.\n", res.RestoredContext)
		}
		return nil
	})
	c.Flags().BoolVarP(&force, "force", "f", false, "power off at once, without asking the guest")
	c.Flags().BoolVar(&cold, "cold", false, "shut the guest down instead of suspending it; the next start boots")
	c.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "how long the guest may take before it is forced off")
	return c
}

func humanBytes(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d MiB", n>>20)
}

func rmCmd() *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "rm [NAME]",
		Short: "Remove a machine and its disks",
	}
	perMachine(c, hostcmd.Options{}, func(cmd *cobra.Command, m *machine.Manager, name string) error {
		warn := func(s string) { fmt.Fprintln(cmd.ErrOrStderr(), "warning:", s) }
		var notes []string
		note := func(s string) { notes = append(notes, s) }
		if err := m.Remove(cmd.Context(), name, machine.RmOptions{Force: force, Warn: warn, Note: note}); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Machine %q removed.\n", name)
		for _, n := range notes {
			fmt.Fprintf(cmd.OutOrStdout(), "%s%s.\n", strings.ToUpper(n[:1]), n[1:])
		}
		return nil
	})
	c.Flags().BoolVarP(&force, "force", "f", false, "stop the machine first if it runs")
	return c
}

func render(out io.Writer, format string, v any, table func(io.Writer)) error {
	switch format {
	case "", "table":
		table(out)
		return nil
	case "json":
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	t, err := template.New("format").Funcs(template.FuncMap{"json": func(x any) string {
		b, _ := json.Marshal(x)
		return string(b)
	}}).Parse(format)
	if err != nil {
		return machine.ErrInvalidf("--format: %v", err)
	}
	// A template applies to each machine of a list.
	if list, ok := v.([]*machine.View); ok {
		for _, m := range list {
			if err := t.Execute(out, m); err != nil {
				return err
			}
			fmt.Fprintln(out)
		}
		return nil
	}
	if err := t.Execute(out, v); err != nil {
		return err
	}
	fmt.Fprintln(out)
	return nil
}

func listCmd() *cobra.Command {
	var format string
	c := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List machines",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := manager(hostcmd.Options{})
			if err != nil {
				return err
			}
			views, err := m.List(cmd.Context())
			if err != nil {
				return err
			}
			return render(cmd.OutOrStdout(), format, views, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tSTATE\tENGINE\tCPUS\tMEMORY\tDISK\tBACKEND")
				for _, v := range views {
					state := string(v.Status.State)
					if v.Status.State == machine.StateStopped && v.SavedState != nil {
						state += " (suspended)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%dMiB\t%dGiB\t%s\n", v.Name, state, v.Spec.Engine, v.Spec.CPUs, v.Spec.MemoryMiB, v.Spec.DiskGiB, v.Spec.Backend)
				}
				tw.Flush()
			})
		},
	}
	c.Flags().StringVar(&format, "format", "table", "table, json, or a Go template")
	return c
}

func inspectCmd() *cobra.Command {
	var format string
	c := &cobra.Command{
		Use:   "inspect [NAME]",
		Short: "Show a machine's configuration and live status",
	}
	perMachine(c, hostcmd.Options{}, func(cmd *cobra.Command, m *machine.Manager, name string) error {
		v, err := m.Inspect(cmd.Context(), name)
		if err != nil {
			return err
		}
		if format == "table" {
			format = "json" // inspect's natural form is the whole document
		}
		return render(cmd.OutOrStdout(), format, v, nil)
	})
	c.Flags().StringVar(&format, "format", "json", "json, table, or a Go template")
	return c
}

func envCmd() *cobra.Command {
	var shell string
	c := &cobra.Command{
		Use:   "env [NAME]",
		Short: "Print the shell commands that point docker (and podman, for a podman machine) at a machine",
	}
	perMachine(c, hostcmd.Options{}, func(cmd *cobra.Command, m *machine.Manager, name string) error {
		d, spec, err := m.Machine(name)
		if err != nil {
			return err
		}
		if shell == "" {
			shell = detectShell()
		}
		tg := hostenv.Target{Machine: name, Endpoint: d.EngineEndpoint(), Engine: string(spec.Engine)}
		s, err := hostenv.ShellLines(hostenv.Shell(shell), hostenv.EnvFor(hostenv.Clients(), tg))
		if err != nil {
			return machine.ErrInvalidf("%v", err)
		}
		fmt.Fprint(cmd.OutOrStdout(), s)
		return nil
	})
	c.Flags().StringVar(&shell, "shell", "", "bash, zsh, fish, powershell or cmd (default: detected)")
	return c
}

func detectShell() string {
	if s := os.Getenv("SHELL"); s != "" {
		switch filepath.Base(s) {
		case "fish":
			return "fish"
		default:
			return "bash"
		}
	}
	if os.Getenv("PSModulePath") != "" {
		return "powershell"
	}
	if os.Getenv("ComSpec") != "" {
		return "cmd"
	}
	return "bash"
}

func setCmd(opts hostcmd.Options) *cobra.Command {
	var cpus int
	var memory, disk string
	var autostart, hostLoopback, switchContext, fileEvents bool
	var memoryReclaim, networkGroup string
	var kubernetes bool
	c := &cobra.Command{
		Use:   "set [NAME]",
		Short: "Change a stopped machine's CPUs, memory or disk size",
	}
	perMachine(c, opts, func(cmd *cobra.Command, m *machine.Manager, name string) error {
		var ch machine.Changes
		flags := cmd.Flags()
		if flags.Changed("cpus") {
			ch.CPUs = &cpus
		}
		if flags.Changed("memory") {
			mib, err := machine.ParseSize(memory)
			if err != nil {
				return machine.ErrInvalidf("--memory: %v", err)
			}
			ch.MemoryMiB = &mib
		}
		if flags.Changed("disk-size") {
			mib, err := machine.ParseSize(disk)
			if err != nil {
				return machine.ErrInvalidf("--disk-size: %v", err)
			}
			gib := mib / 1024
			ch.DiskGiB = &gib
		}
		if flags.Changed("autostart") {
			ch.Autostart = &autostart
		}
		if flags.Changed("host-loopback") {
			ch.HostLoopback = &hostLoopback
		}
		if flags.Changed("switch-context") {
			ch.SwitchContext = &switchContext
		}
		if flags.Changed("memory-reclaim") {
			ch.MemoryReclaim = &memoryReclaim
		}
		if flags.Changed("file-events") {
			ch.FileEvents = &fileEvents
		}
		if flags.Changed("network-group") {
			ch.NetworkGroup = &networkGroup
		}
		if flags.Changed("kubernetes") {
			ch.Kubernetes = &kubernetes
		}
		res, err := m.Set(cmd.Context(), name, ch)
		if err != nil {
			return err
		}
		if res.Discarded {
			fmt.Fprintf(cmd.OutOrStdout(), "The machine's saved state is discarded: the next start boots.\n")
		}
		s := res.Spec
		fmt.Fprintf(cmd.OutOrStdout(), "Machine %q: %d CPUs, %dMiB memory, %dGiB disk.\n", name, s.CPUs, s.MemoryMiB, s.DiskGiB)
		return nil
	})
	c.Flags().IntVar(&cpus, "cpus", 0, "number of virtual CPUs")
	c.Flags().StringVar(&memory, "memory", "", "memory, e.g. 4G")
	c.Flags().StringVar(&disk, "disk-size", "", "grow the data disk to this size")
	c.Flags().BoolVar(&hostLoopback, "host-loopback", true, "whether containers reach the host's loopback services (host.docker.internal); from the next start")
	c.Flags().BoolVar(&autostart, "autostart", false, "start the machine at login (systemd user unit, launchd agent or Task Scheduler)")
	c.Flags().BoolVar(&switchContext, "switch-context", false, "make the machine's docker context the current one on every start, even over one you chose")
	c.Flags().StringVar(&memoryReclaim, "memory-reclaim", "", memoryReclaimHelp)
	c.Flags().BoolVar(&fileEvents, "file-events", true, "whether host file changes reach file watchers in the VM (9p and virtiofs shares); from the next start")
	c.Flags().StringVar(&networkGroup, "network-group", "", networkGroupHelp+` ("" leaves the group); from the next start`)
	c.Flags().BoolVar(&kubernetes, "kubernetes", false, kubernetesHelp+"; from the next start (=false removes its kubeconfig entries now)")
	return c
}

const kubernetesHelp = "run a single-node Kubernetes beside docker (at least 2GiB memory), with a kubeconfig context skiff (skiff-NAME) on the host"

const networkGroupHelp = "join the machines of this group on a network of their own (a second NIC, names NAME.skiff.internal; qemu only)"

func logsCmd() *cobra.Command {
	var serial, follow bool
	c := &cobra.Command{
		Use:   "logs [NAME]",
		Short: "Show the host agent log (or the guest's serial console with --serial)",
	}
	perMachine(c, hostcmd.Options{}, func(cmd *cobra.Command, m *machine.Manager, name string) error {
		d, _, err := m.Machine(name)
		if err != nil {
			return err
		}
		p := d.File(machine.FileAgentLog)
		if serial {
			p = d.File(machine.FileSerialLog)
		}
		return followFile(cmd.Context(), cmd.OutOrStdout(), p, follow)
	})
	c.Flags().BoolVar(&serial, "serial", false, "show the guest's serial console")
	c.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing as the log grows")
	return c
}

func followFile(ctx context.Context, out io.Writer, p string, follow bool) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		if _, err := io.Copy(out, f); err != nil {
			return err
		}
		if !follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}
