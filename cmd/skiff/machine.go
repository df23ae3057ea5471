package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-dev/skiff/images"
	"github.com/skiff-dev/skiff/installer"
	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/machine/agentapi"
	"github.com/skiff-dev/skiff/vmm"
)

func machineCmd(opts installer.CommandOptions) *cobra.Command {
	c := &cobra.Command{Use: "machine", Short: "Manage Skiff machines", Aliases: []string{"m"}}
	c.AddCommand(initCmd(), startCmd(), stopCmd(), rmCmd(), listCmd(), inspectCmd(), sshCmd(), envCmd(), setCmd(opts), logsCmd(),
		installer.NewAutostartCommand(opts))
	return c
}

func home() (machine.Home, error) { return machine.DefaultHome() }

// nameArg returns the machine named on the command line, or the default one.
func nameArg(args []string) (string, error) {
	name := machine.DefaultName
	if len(args) > 0 {
		name = args[0]
	}
	return name, machine.ValidateName(name)
}

// completeMachines offers existing machine names to shell completion.
func completeMachines(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	h, err := home()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	names, _ := h.List()
	return names, cobra.ShellCompDirectiveNoFileComp
}

// target resolves the machine a command names (or the default) in Skiff's home.
func target(args []string) (machine.Home, string, error) {
	name, err := nameArg(args)
	if err != nil {
		return machine.Home{}, "", err
	}
	h, err := home()
	return h, name, err
}

func existing(name string) (machine.Home, machine.Dir, *machine.Spec, error) {
	h, err := home()
	if err != nil {
		return h, machine.Dir{}, nil, err
	}
	d := h.Dir(name)
	s, err := d.Spec()
	return h, d, s, err
}

func initCmd() *cobra.Command {
	var (
		cpus                  int
		memory, disk, imgRef  string
		engine, backend, bind string
		shareType             string
		mounts                []string
		now, noHome           bool
	)
	c := &cobra.Command{
		Use:   "init [NAME]",
		Short: "Create a machine",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, name, err := target(args)
			if err != nil {
				return err
			}
			if h.Dir(name).Exists() {
				return fmt.Errorf("machine %q already exists (remove it with: skiff machine rm %s)", name, name)
			}
			memMiB, err := machine.ParseSize(memory)
			if err != nil {
				return fmt.Errorf("--memory: %w", err)
			}
			diskMiB, err := machine.ParseSize(disk)
			if err != nil {
				return fmt.Errorf("--disk-size: %w", err)
			}
			spec := &machine.Spec{Name: name, Backend: backend, CPUs: cpus, MemoryMiB: memMiB,
				DiskGiB: diskMiB / 1024, Engine: machine.Engine(engine), PortBindAddress: bind, ShareType: shareType}
			if !noHome {
				if hd, err := os.UserHomeDir(); err == nil {
					spec.Mounts = append(spec.Mounts, machine.Mount{HostPath: hd, GuestPath: machine.GuestPathFor(hd)})
				}
			}
			for _, m := range mounts {
				mt, err := machine.ParseMount(m)
				if err != nil {
					return err
				}
				spec.Mounts = append(spec.Mounts, mt)
			}
			if err := spec.Validate(machine.HostLimits()); err != nil {
				return err
			}
			if imgRef == "" {
				imgRef = defaultImage()
			}
			opt := images.Options{Progress: os.Stderr}
			chk := imageChecker(backend)
			if chk != nil {
				opt.Roles = chk.ImageRoles()
			}
			inst, err := images.Install(cmd.Context(), imgRef, h.CacheDir(), opt)
			if err != nil {
				return err
			}
			if chk != nil {
				if err := chk.CheckImageDir(inst.Dir); err != nil {
					return err
				}
			}
			spec.Image = machine.ImageRef{Digest: inst.Digest, Version: inst.Manifest.Version, Dir: inst.Dir, Source: imgRef, Arch: inst.Manifest.Arch}
			if err := h.Create(spec); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Machine %q created (%d CPUs, %dMiB memory, %dGiB disk, %s, image %s).\n",
				name, spec.CPUs, spec.MemoryMiB, spec.DiskGiB, spec.Engine, inst.Manifest.Version)
			if now {
				return startMachine(cmd.Context(), cmd.OutOrStdout(), name)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Start it with: skiff machine start%s\n", nameSuffix(name))
			return nil
		},
	}
	f := c.Flags()
	f.IntVar(&cpus, "cpus", 2, "number of virtual CPUs")
	f.StringVar(&memory, "memory", "2G", "memory, e.g. 2048M or 4G")
	f.StringVar(&disk, "disk-size", "64G", "maximum size of the data disk (sparse: it uses only what is written)")
	f.StringVar(&imgRef, "image", "", "guest image: a directory or manifest path, or an http(s) URL, optionally @sha256:DIGEST")
	f.StringVar(&engine, "engine", "docker", "container engine: docker or podman")
	f.StringVar(&backend, "backend", defaultBackend(), "hypervisor backend")
	f.StringVar(&bind, "port-bind-address", "", "host address published ports bind to (default 127.0.0.1)")
	f.StringVar(&shareType, "share-type", "", "how folders are shared: 9p, virtiofs or 9p-transport (default: the backend's best)")
	f.StringArrayVar(&mounts, "mount", nil, "share a host folder: HOST[:GUEST][:ro] (repeatable)")
	f.BoolVar(&noHome, "no-home-share", false, "do not share the home directory")
	f.BoolVar(&now, "now", false, "start the machine after creating it")
	return c
}

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
	return &cobra.Command{
		Use:               "start [NAME]",
		Short:             "Start a machine; returns when its engine answers",
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeMachines,
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := nameArg(args)
			if err != nil {
				return err
			}
			return startMachine(cmd.Context(), cmd.OutOrStdout(), name)
		},
	}
}

func startMachine(ctx context.Context, out io.Writer, name string) error {
	_, d, spec, err := existing(name)
	if err != nil {
		return err
	}
	lock, err := machine.TryLock(d.File(machine.FileStartLock))
	if errors.Is(err, machine.ErrLocked) {
		return fmt.Errorf("machine %q is being started by another skiff command", name)
	}
	if err != nil {
		return err
	}
	defer lock.Unlock()
	st := d.Status(ctx)
	switch st.State {
	case machine.StateRunning:
		// Succeeds, so that login autostart and scripts can start unconditionally.
		fmt.Fprintf(out, "Machine %q is already running.\n", name)
		return nil
	case machine.StateStarting, machine.StateStopping:
		return fmt.Errorf("machine %q is %s", name, st.State)
	case machine.StateCrashed:
		fmt.Fprintf(out, "Machine %q had crashed; recovering.\n", name)
		os.Remove(d.File(machine.FileAgentPID))
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(d.File(machine.FileAgentLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	agent := exec.Command(self, "hostagent", name)
	agent.Stdout, agent.Stderr = logf, logf
	agent.Dir = d.Path
	detach(agent)
	began := time.Now()
	if err := agent.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start host agent: %w", err)
	}
	logf.Close()
	exited := make(chan error, 1)
	go func() { exited <- agent.Wait() }()
	fmt.Fprintf(out, "Starting machine %q", name)
	// A warm start takes about a second: poll often enough not to add to it.
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	dots := time.Now()
	for {
		select {
		case err := <-exited:
			fmt.Fprintln(out)
			return startFailure(d, err)
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
		if time.Since(dots) > 2*time.Second {
			fmt.Fprint(out, ".")
			dots = time.Now()
		}
		st := d.Status(ctx)
		if st.State == machine.StateRunning {
			how := ""
			if b := st.Agent.Boot; b != nil && b.Warm {
				how = " (resumed from its saved state)"
			}
			fmt.Fprintf(out, " running after %s%s.\n", time.Since(began).Round(100*time.Millisecond), how)
			if b := st.Agent.Boot; b != nil && b.Reason != "" {
				fmt.Fprintf(out, "Booted cold: %s.\n", b.Reason)
			}
			sock := d.EngineEndpoint()
			if err := installer.CreateContext(name, sock); err != nil {
				fmt.Fprintf(out, "warning: could not create the docker context: %v\n", err)
			}
			fmt.Fprintf(out, "Engine (%s) socket: %s\n", spec.Engine, sock)
			fmt.Fprintf(out, "Use it with:  docker --context %s ps\n", installer.ContextName(name))
			fmt.Fprintf(out, "         or:  export DOCKER_HOST=%s\n", installer.EngineHost(sock))
			return nil
		}
	}
}

// startFailure explains why the agent died: its log and the guest's serial console.
func startFailure(d machine.Dir, waitErr error) error {
	var b strings.Builder
	fmt.Fprintf(&b, "machine %q failed to start (%v)\n", d.Name, waitErr)
	fmt.Fprintf(&b, "--- host agent log (%s) ---\n%s\n", d.File(machine.FileAgentLog), tail(d.File(machine.FileAgentLog), 15))
	fmt.Fprintf(&b, "--- serial console (%s) ---\n%s", d.File(machine.FileSerialLog), tail(d.File(machine.FileSerialLog), 25))
	fmt.Fprintln(os.Stderr, b.String())
	return &exitError{code: 1}
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
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
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeMachines,
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := nameArg(args)
			if err != nil {
				return err
			}
			_, d, _, err := existing(name)
			if err != nil {
				return err
			}
			return stopMachine(cmd.Context(), cmd.OutOrStdout(), d, agentapi.StopRequest{Force: force, Cold: cold || force, Timeout: timeout})
		},
	}
	c.Flags().BoolVarP(&force, "force", "f", false, "power off at once, without asking the guest")
	c.Flags().BoolVar(&cold, "cold", false, "shut the guest down instead of suspending it; the next start boots")
	c.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "how long the guest may take before it is forced off")
	return c
}

func stopMachine(ctx context.Context, out io.Writer, d machine.Dir, req agentapi.StopRequest) error {
	st := d.Status(ctx)
	switch st.State {
	case machine.StateStopped:
		if req.Cold && d.SavedStateInfo() != nil {
			if err := d.DiscardSavedState(); err != nil {
				return fmt.Errorf("discard the saved state of %s: %w", d.Name, err)
			}
			fmt.Fprintf(out, "Machine %q was suspended; its saved state is discarded and the next start boots.\n", d.Name)
			return nil
		}
		fmt.Fprintf(out, "Machine %q is already stopped.\n", d.Name)
		return nil
	case machine.StateCrashed:
		os.Remove(d.File(machine.FileAgentPID))
		fmt.Fprintf(out, "Machine %q had crashed; marked stopped.\n", d.Name)
		return nil
	}
	cl := agentapi.NewClient(d.Sock(machine.SockControl))
	res, err := cl.Stop(ctx, req)
	if err != nil {
		// An agent that exited as it answered has done the job; one still running has not.
		time.Sleep(500 * time.Millisecond)
		if machine.Held(d.File(machine.FileAgentLock)) || d.Status(ctx).State == machine.StateCrashed {
			return fmt.Errorf("stop %s: %w", d.Name, err)
		}
	}
	// The agent answers once the VM is down; wait for it to release its lock.
	for i := 0; i < 100 && machine.Held(d.File(machine.FileAgentLock)); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if res != nil && res.NotSuspended != "" {
		fmt.Fprintf(out, "Could not suspend: %s.\n", res.NotSuspended)
	}
	if info := d.SavedStateInfo(); info != nil {
		fmt.Fprintf(out, "Machine %q suspended (saved state: %s); start resumes it, stop --cold discards it.\n", d.Name, humanBytes(info.SizeBytes))
		return nil
	}
	fmt.Fprintf(out, "Machine %q stopped.\n", d.Name)
	return nil
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
		Use:               "rm [NAME]",
		Short:             "Remove a machine and its disks",
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeMachines,
		RunE: func(cmd *cobra.Command, args []string) error {
			h, name, err := target(args)
			if err != nil {
				return err
			}
			d := h.Dir(name)
			if !d.Exists() {
				return fmt.Errorf("machine %q %w", name, machine.ErrNotFound)
			}
			st := d.Status(cmd.Context())
			if st.State != machine.StateStopped && st.State != machine.StateCrashed {
				if !force {
					return fmt.Errorf("machine %q is %s: stop it first or use rm -f", name, st.State)
				}
				if err := stopMachine(cmd.Context(), io.Discard, d, agentapi.StopRequest{Force: true}); err != nil {
					return err
				}
			}
			backend, err := backendOf(d)
			if err != nil {
				return err
			}
			warn := func(s string) { fmt.Fprintln(cmd.ErrOrStderr(), "warning:", s) }
			if err := h.Remove(cmd.Context(), name, machine.RemoveOptions{Backend: backend, Warn: warn}); err != nil {
				return err
			}
			installer.RemoveContext(name)
			fmt.Fprintf(cmd.OutOrStdout(), "Machine %q removed.\n", name)
			return nil
		},
	}
	c.Flags().BoolVarP(&force, "force", "f", false, "stop the machine first if it runs")
	return c
}

// machineView is what list and inspect print: the spec plus the status computed now.
type machineView struct {
	Name   string         `json:"name"`
	Status machine.Status `json:"status"`
	Spec   *machine.Spec  `json:"spec"`
	Dir    string         `json:"dir"`
	Engine string         `json:"engineSocket"`
	Disk   diskView       `json:"dataDisk"`
	// SavedState is the suspended VM's state, when there is one.
	SavedState *machine.SavedStateInfo `json:"savedState,omitempty"`
}

type diskView struct {
	Path           string `json:"path"`
	SizeBytes      int64  `json:"sizeBytes"`
	AllocatedBytes int64  `json:"allocatedBytes"`
}

func view(ctx context.Context, h machine.Home, name string) (*machineView, error) {
	d := h.Dir(name)
	s, err := d.Spec()
	if err != nil {
		return nil, err
	}
	v := &machineView{Name: name, Status: d.Status(ctx), Spec: s, Dir: d.Path, Engine: d.EngineEndpoint()}
	v.Disk.Path = d.File(machine.FileDataDisk)
	v.Disk.SizeBytes, v.Disk.AllocatedBytes = fileSizes(v.Disk.Path)
	v.SavedState = d.SavedStateInfo()
	return v, nil
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
		return fmt.Errorf("--format: %w", err)
	}
	// A template applies to each machine of a list.
	if list, ok := v.([]*machineView); ok {
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
			h, err := home()
			if err != nil {
				return err
			}
			names, err := h.List()
			if err != nil {
				return err
			}
			views := []*machineView{}
			for _, n := range names {
				v, err := view(cmd.Context(), h, n)
				if err != nil {
					return err
				}
				views = append(views, v)
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
		Use:               "inspect [NAME]",
		Short:             "Show a machine's configuration and live status",
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeMachines,
		RunE: func(cmd *cobra.Command, args []string) error {
			h, name, err := target(args)
			if err != nil {
				return err
			}
			v, err := view(cmd.Context(), h, name)
			if err != nil {
				return err
			}
			if format == "table" {
				format = "json" // inspect's natural form is the whole document
			}
			return render(cmd.OutOrStdout(), format, v, nil)
		},
	}
	c.Flags().StringVar(&format, "format", "json", "json, table, or a Go template")
	return c
}

func envCmd() *cobra.Command {
	var shell string
	c := &cobra.Command{
		Use:               "env [NAME]",
		Short:             "Print the shell commands that point docker at a machine",
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeMachines,
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := nameArg(args)
			if err != nil {
				return err
			}
			_, d, _, err := existing(name)
			if err != nil {
				return err
			}
			if shell == "" {
				shell = detectShell()
			}
			s, err := installer.EnvLines(installer.Shell(shell), d.EngineEndpoint())
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), s)
			return nil
		},
	}
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

func setCmd(opts installer.CommandOptions) *cobra.Command {
	var cpus int
	var memory, disk string
	var autostart bool
	c := &cobra.Command{
		Use:               "set [NAME]",
		Short:             "Change a stopped machine's CPUs, memory or disk size",
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeMachines,
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := nameArg(args)
			if err != nil {
				return err
			}
			_, d, spec, err := existing(name)
			if err != nil {
				return err
			}
			onlyAutostart := !cmd.Flags().Changed("cpus") && !cmd.Flags().Changed("memory") && !cmd.Flags().Changed("disk-size")
			if st := d.Status(cmd.Context()); !onlyAutostart && st.State != machine.StateStopped && st.State != machine.StateCrashed {
				return fmt.Errorf("machine %q is %s: stop it before changing it", name, st.State)
			}
			next := *spec
			if cmd.Flags().Changed("cpus") {
				next.CPUs = cpus
			}
			if cmd.Flags().Changed("memory") {
				if next.MemoryMiB, err = machine.ParseSize(memory); err != nil {
					return fmt.Errorf("--memory: %w", err)
				}
			}
			if cmd.Flags().Changed("autostart") {
				next.Autostart = autostart
			}
			if cmd.Flags().Changed("disk-size") {
				mib, err := machine.ParseSize(disk)
				if err != nil {
					return fmt.Errorf("--disk-size: %w", err)
				}
				if mib/1024 < spec.DiskGiB {
					return fmt.Errorf("--disk-size %s: the data disk is %dGiB and cannot shrink", disk, spec.DiskGiB)
				}
				next.DiskGiB = mib / 1024
			}
			if err := next.Validate(machine.HostLimits()); err != nil {
				return err
			}
			if next.DiskGiB != spec.DiskGiB {
				if err := machine.ResizeDataDisk(d, next.DiskGiB); err != nil {
					return err
				}
			}
			if next.Autostart != spec.Autostart {
				if err := installer.ApplyAutostart(cmd.Context(), opts, installer.AutostartRequest{Machine: name, Enabled: next.Autostart}); err != nil {
					return err
				}
			}
			if err := next.Save(d.File(machine.FileConfig)); err != nil {
				return err
			}
			// A suspended VM cannot resume with other hardware; say so now, not at start.
			if !onlyAutostart && d.SavedStateInfo() != nil {
				if err := d.DiscardSavedState(); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "The machine's saved state is discarded: the next start boots.\n")
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Machine %q: %d CPUs, %dMiB memory, %dGiB disk.\n", name, next.CPUs, next.MemoryMiB, next.DiskGiB)
			return nil
		},
	}
	c.Flags().IntVar(&cpus, "cpus", 0, "number of virtual CPUs")
	c.Flags().StringVar(&memory, "memory", "", "memory, e.g. 4G")
	c.Flags().StringVar(&disk, "disk-size", "", "grow the data disk to this size")
	c.Flags().BoolVar(&autostart, "autostart", false, "start the machine at login (systemd user unit, launchd agent or Task Scheduler)")
	return c
}

func logsCmd() *cobra.Command {
	var serial, follow bool
	c := &cobra.Command{
		Use:               "logs [NAME]",
		Short:             "Show the host agent log (or the guest's serial console with --serial)",
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeMachines,
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := nameArg(args)
			if err != nil {
				return err
			}
			_, d, _, err := existing(name)
			if err != nil {
				return err
			}
			p := d.File(machine.FileAgentLog)
			if serial {
				p = d.File(machine.FileSerialLog)
			}
			return followFile(cmd.Context(), cmd.OutOrStdout(), p, follow)
		},
	}
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

// backendOf is the backend machine d was made with. A machine without a readable config
// (its init stopped halfway) never started, so no backend made anything for it: nil.
func backendOf(d machine.Dir) (vmm.Backend, error) {
	s, err := d.Spec()
	if err != nil {
		return nil, nil
	}
	return backendFor(s.Backend)
}
