// Package hostcmd holds the host-integration commands the CLI mounts (autostart, doctor,
// socket), shared with skiffpkg, which mounts them for the installer's shell tests.
package hostcmd

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/skiff-dev/skiff/installer"
	"github.com/skiff-dev/skiff/installer/doctor"
	"github.com/skiff-dev/skiff/installer/hostenv"
	"github.com/skiff-dev/skiff/machine"
)

// Options carry what the host-integration commands need; zero values use the real host.
type Options struct {
	// Home returns Skiff's data directory; nil means machine.DefaultHome.
	Home func() (machine.Home, error)
	// Runner runs systemctl/launchctl/schtasks/sudo; nil runs them for real.
	Runner hostenv.Runner
	// DoctorEnv builds the doctor's view of the host; nil means doctor.DefaultEnv.
	DoctorEnv func(machine.Home) doctor.Env
	// Executable is the skiff binary login hooks run; nil means installer.StableExecutable.
	Executable func() (string, error)
	// Autostart overrides the platform paths Enable/Disable use (tests).
	Autostart installer.AutostartOptions
}

// HomeDir is Skiff's data directory under o.
func (o Options) HomeDir() (machine.Home, error) {
	if o.Home != nil {
		return o.Home()
	}
	return machine.DefaultHome()
}

func (o Options) exe() (string, error) {
	if o.Executable != nil {
		return o.Executable()
	}
	return installer.StableExecutable()
}

// homeAndExe are the home and the executable the login hooks of o are made for.
func (o Options) homeAndExe() (machine.Home, string, error) {
	home, err := o.HomeDir()
	if err != nil {
		return home, "", err
	}
	exe, err := o.exe()
	return home, exe, err
}

// ApplyAutostart turns a machine's login hook on or off with o's environment.
func (o Options) ApplyAutostart(ctx context.Context, name string, enabled bool) error {
	home, exe, err := o.homeAndExe()
	if err != nil {
		return err
	}
	ao := o.Autostart
	if ao.Runner == nil {
		ao.Runner = o.Runner
	}
	return installer.ApplyAutostart(ctx, installer.AutostartRequest{Home: home, Machine: name, Enabled: enabled, Binary: exe}, ao)
}

// NewAutostart is `autostart enable|disable|status NAME`.
func NewAutostart(o Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "autostart",
		Short: "Start machines when you log in, without the tray app",
	}
	for _, on := range []bool{true, false} {
		verb, short := "enable", "Start the machine at login (and stop it at logout where the OS allows)"
		if !on {
			verb, short = "disable", "Stop starting the machine at login (a running machine keeps running)"
		}
		enabled := on
		cmd.AddCommand(&cobra.Command{
			Use:   verb + " [NAME]",
			Short: short,
			Args:  cobra.MaximumNArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				name := machineArg(args)
				if err := o.ApplyAutostart(cmd.Context(), name, enabled); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "autostart of %s %sd\n", name, verb)
				return nil
			},
		})
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "status [NAME]",
		Short: "Say whether the machine starts at login",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := machineArg(args)
			home, exe, err := o.homeAndExe()
			if err != nil {
				return err
			}
			on, err := installer.MachineAutostart(home, name, exe).Enabled(cmd.Context(), o.Autostart)
			if err != nil {
				return err
			}
			state := "disabled"
			if on {
				state = "enabled"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "autostart of %s: %s\n", name, state)
			return nil
		},
	})
	return cmd
}

func machineArg(args []string) string {
	if len(args) > 0 {
		return args[0]
	}
	return machine.DefaultName
}

// NewDoctor is `doctor`: it prints a table of findings and fails when any check
// fails (warnings do not fail it).
func NewDoctor(o Options) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:          "doctor",
		Short:        "Check that this host can run Skiff machines",
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			home, err := o.HomeDir()
			if err != nil {
				return err
			}
			mk := o.DoctorEnv
			if mk == nil {
				mk = doctor.DefaultEnv
			}
			fs := doctor.Run(cmd.Context(), mk(home))
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(fs); err != nil {
					return err
				}
			} else {
				printFindings(cmd.OutOrStdout(), fs)
			}
			if doctor.Failed(fs) {
				return doctor.ErrFailed
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the findings as JSON")
	return cmd
}

func printFindings(w io.Writer, fs []doctor.Finding) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tSTATUS\tDETAIL")
	for _, f := range fs {
		status := "ok"
		switch {
		case !f.OK && f.Warn:
			status = "WARN"
		case !f.OK:
			status = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Check, status, f.Detail)
		if !f.OK && f.Fix != "" {
			fmt.Fprintf(tw, "\t\tfix: %s\n", f.Fix)
		}
	}
	tw.Flush()
}

// NewSocket is `socket link|unlink|status`: the well-known docker socket (or,
// on Windows, pipe) for tools that ignore docker contexts.
func NewSocket(o Options) *cobra.Command {
	var name, path string
	var sudo, yes bool
	cmd := &cobra.Command{
		Use:   "socket",
		Short: "Point the well-known docker socket at a Skiff machine, for tools that ignore docker contexts",
	}
	cmd.PersistentFlags().StringVar(&name, "machine", machine.DefaultName, "machine whose engine the socket reaches")
	cmd.PersistentFlags().StringVar(&path, "path", hostenv.DockerSocketPath, "the well-known socket path")
	opts := func() (hostenv.SocketLinkOptions, error) {
		home, err := o.HomeDir()
		if err != nil {
			return hostenv.SocketLinkOptions{}, err
		}
		d := home.Dir(name)
		tmpRun := filepath.Join(os.TempDir(), fmt.Sprintf("skiff-%d", os.Getuid()))
		so := hostenv.SocketLinkOptions{
			Path:   path,
			Target: d.EngineEndpoint(),
			IsOurs: func(t string) bool { return hostenv.IsSkiffPath(t, home.Root, tmpRun) },
			Runner: o.Runner,
		}
		if sudo {
			so.Privilege = hostenv.PrivilegeSudo
		}
		return so, nil
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Say who owns the well-known socket",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runtime.GOOS == "windows" {
				st, err := hostenv.DecidePipe(hostenv.PipeOptions{})
				if err != nil && !errors.Is(err, hostenv.ErrEndpointBusy) {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s (%s)\n", st.Path, st.State, st.Detail)
				return nil
			}
			so, err := opts()
			if err != nil {
				return err
			}
			st, err := hostenv.InspectSocket(cmd.Context(), so)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s (%s)\n", st.Path, st.State, st.Detail)
			return nil
		},
	}
	link := &cobra.Command{
		Use:   "link",
		Short: "Link the well-known socket to the machine's engine (asks first)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runtime.GOOS == "windows" {
				return fmt.Errorf("on Windows the host agent serves %s itself whenever no other engine holds it", hostenv.DockerEnginePipe)
			}
			so, err := opts()
			if err != nil {
				return err
			}
			home, _ := o.HomeDir()
			if !home.Dir(name).Exists() {
				return machine.NotFound(name)
			}
			// Refuse early, before asking, when the answer would not matter.
			st, err := hostenv.InspectSocket(cmd.Context(), so)
			if err != nil {
				return err
			}
			if st.State != hostenv.EndpointFree && st.State != hostenv.EndpointOurs {
				return hostenv.Busy(st)
			}
			if !yes {
				fmt.Fprintf(cmd.OutOrStdout(), "Link %s to Skiff machine %q (%s)?\nEvery tool that uses %s will then talk to this machine. [y/N] ", so.SocketPath(), name, so.Target, so.SocketPath())
				line, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
					return errors.New("not linked: the link is made only when you confirm (or pass --yes)")
				}
			}
			so.Consented = true
			if err := hostenv.LinkSocket(cmd.Context(), so); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s -> %s\n", so.SocketPath(), so.Target)
			return nil
		},
	}
	link.Flags().BoolVar(&yes, "yes", false, "do not ask for confirmation")
	unlink := &cobra.Command{
		Use:   "unlink",
		Short: "Remove the well-known socket link if it is Skiff's",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			so, err := opts()
			if err != nil {
				return err
			}
			return hostenv.UnlinkSocket(cmd.Context(), so)
		},
	}
	for _, c := range []*cobra.Command{link, unlink} {
		c.Flags().BoolVar(&sudo, "sudo", false, "use sudo when the socket's directory is root-owned")
	}
	cmd.AddCommand(status, link, unlink)
	return cmd
}
