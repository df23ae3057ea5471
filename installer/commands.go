package installer

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/skiff-dev/skiff/installer/doctor"
	"github.com/skiff-dev/skiff/machine"
)

// CommandOptions carry what the commands need from the CLI; zero values use the real host.
type CommandOptions struct {
	// Home returns Skiff's data directory; nil means machine.DefaultHome.
	Home func() (machine.Home, error)
	// Runner runs systemctl/launchctl/schtasks/sudo; nil runs them for real.
	Runner Runner
	// DoctorEnv builds the doctor's view of the host; nil means doctor.DefaultEnv.
	DoctorEnv func(machine.Home) doctor.Env
	// Executable is the skiff binary login hooks run; nil means StableExecutable.
	Executable func() (string, error)
	// Autostart overrides the platform paths Enable/Disable use (tests).
	Autostart AutostartOptions
}

func (o CommandOptions) home() (machine.Home, error) {
	if o.Home != nil {
		return o.Home()
	}
	return machine.DefaultHome()
}

func (o CommandOptions) exe() (string, error) {
	if o.Executable != nil {
		return o.Executable()
	}
	return StableExecutable()
}

// StableExecutable is this executable's path as login hooks should run it: the PATH
// entry (say /opt/homebrew/bin/skiff) when it is the same file, because a package
// manager's versioned path (…/Cellar/skiff/0.1.0/bin/skiff) disappears on upgrade.
func StableExecutable() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the skiff executable: %w", err)
	}
	name := "skiff"
	if runtime.GOOS == "windows" {
		name = "skiff.exe"
	}
	if p, err := exec.LookPath(name); err == nil {
		if abs, err := filepath.Abs(p); err == nil && sameFile(abs, exe) {
			return abs, nil
		}
	}
	return exe, nil
}

func sameFile(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// MachineAutostart is the login hook for a machine of home run by binary. SKIFF_HOME is
// recorded only when the user set one; otherwise the default is resolved at login.
func MachineAutostart(home machine.Home, name, binary string) Autostart {
	a := Autostart{Binary: binary, Machine: name}
	if os.Getenv("SKIFF_HOME") != "" {
		a.Home = home.Root
	}
	return a
}

// AutostartRequest asks ApplyAutostart to turn a machine's login hook on or off.
type AutostartRequest struct {
	Machine string
	Enabled bool
}

// ApplyAutostart makes the login hook match req. `skiff machine set --autostart` calls it
// after saving Spec.Autostart, so the spec and the host agree.
func ApplyAutostart(ctx context.Context, o CommandOptions, req AutostartRequest) error {
	home, err := o.home()
	if err != nil {
		return err
	}
	if !home.Dir(req.Machine).Exists() && req.Enabled {
		return fmt.Errorf("machine %q does not exist (create it with: skiff machine init %s)", req.Machine, req.Machine)
	}
	exe, err := o.exe()
	if err != nil {
		return err
	}
	ao := o.Autostart
	if ao.Runner == nil {
		ao.Runner = o.Runner
	}
	a := MachineAutostart(home, req.Machine, exe)
	if req.Enabled {
		return a.Enable(ctx, ao)
	}
	return a.Disable(ctx, ao)
}

// NewAutostartCommand is `autostart enable|disable|status NAME`.
func NewAutostartCommand(o CommandOptions) *cobra.Command {
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
				if err := ApplyAutostart(cmd.Context(), o, AutostartRequest{Machine: name, Enabled: enabled}); err != nil {
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
			home, err := o.home()
			if err != nil {
				return err
			}
			exe, err := o.exe()
			if err != nil {
				return err
			}
			name := machineArg(args)
			on, err := MachineAutostart(home, name, exe).Enabled(cmd.Context(), o.Autostart)
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

// NewDoctorCommand is `doctor`: it prints a table of findings and fails when any check
// fails (warnings do not fail it).
func NewDoctorCommand(o CommandOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:          "doctor",
		Short:        "Check that this host can run Skiff machines",
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			home, err := o.home()
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

// NewSocketCommand is `socket link|unlink|status`: the well-known docker socket (or,
// on Windows, pipe) for tools that ignore docker contexts.
func NewSocketCommand(o CommandOptions) *cobra.Command {
	var name, path string
	var sudo, yes bool
	cmd := &cobra.Command{
		Use:   "socket",
		Short: "Point the well-known docker socket at a Skiff machine, for tools that ignore docker contexts",
	}
	cmd.PersistentFlags().StringVar(&name, "machine", machine.DefaultName, "machine whose engine the socket reaches")
	cmd.PersistentFlags().StringVar(&path, "path", DockerSocketPath, "the well-known socket path")
	opts := func() (SocketLinkOptions, error) {
		home, err := o.home()
		if err != nil {
			return SocketLinkOptions{}, err
		}
		d := home.Dir(name)
		tmpRun := filepath.Join(os.TempDir(), fmt.Sprintf("skiff-%d", os.Getuid()))
		so := SocketLinkOptions{
			Path:   path,
			Target: d.EngineEndpoint(),
			IsOurs: func(t string) bool { return isSkiffPath(t, home.Root, tmpRun) },
			Runner: o.Runner,
		}
		if sudo {
			so.Privilege = PrivilegeSudo
		}
		return so, nil
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Say who owns the well-known socket",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runtime.GOOS == "windows" {
				st, err := DecidePipe(PipeOptions{})
				if err != nil && !errors.Is(err, ErrEndpointBusy) {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s (%s)\n", st.Path, st.State, st.Detail)
				return nil
			}
			so, err := opts()
			if err != nil {
				return err
			}
			st, err := InspectSocket(cmd.Context(), so)
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
				return fmt.Errorf("on Windows the host agent serves %s itself whenever no other engine holds it", DockerEnginePipe)
			}
			so, err := opts()
			if err != nil {
				return err
			}
			home, _ := o.home()
			if !home.Dir(name).Exists() {
				return fmt.Errorf("machine %q does not exist (create it with: skiff machine init %s)", name, name)
			}
			// Refuse early, before asking, when the answer would not matter.
			st, err := InspectSocket(cmd.Context(), so)
			if err != nil {
				return err
			}
			if st.State != EndpointFree && st.State != EndpointOurs {
				return busy(st)
			}
			if !yes {
				fmt.Fprintf(cmd.OutOrStdout(), "Link %s to Skiff machine %q (%s)?\nEvery tool that uses %s will then talk to this machine. [y/N] ", so.path(), name, so.Target, so.path())
				line, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
					return errors.New("not linked: the link is made only when you confirm (or pass --yes)")
				}
			}
			so.Consented = true
			if err := LinkSocket(cmd.Context(), so); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s -> %s\n", so.path(), so.Target)
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
			return UnlinkSocket(cmd.Context(), so)
		},
	}
	for _, c := range []*cobra.Command{link, unlink} {
		c.Flags().BoolVar(&sudo, "sudo", false, "use sudo when the socket's directory is root-owned")
	}
	cmd.AddCommand(status, link, unlink)
	return cmd
}
