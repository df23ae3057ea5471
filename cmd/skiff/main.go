// Command skiff is the host CLI: skiff machine init|start|stop|rm|list|inspect|ssh|env|set|logs,
// plus the hidden `skiff hostagent NAME` that owns one running machine.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/skiff-dev/skiff/cmd/internal/hostcmd"
	"github.com/skiff-dev/skiff/images"
	"github.com/skiff-dev/skiff/installer"
	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/vmm"
)

// exitError carries an exit code for errors that already printed their message.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run runs the CLI with args and returns its exit status.
func run(args []string, stdout, stderr io.Writer) int {
	root := &cobra.Command{
		Use:           "skiff",
		Short:         "Run containers in a small Linux VM, with the engine brought to your host",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// A bad flag is bad input, like a bad value: the same exit status.
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return machine.ErrInvalidf("%v", err) })
	opts := hostcmd.Options{}
	system := &cobra.Command{Use: "system", Short: "Host integration: well-known engine endpoints"}
	system.AddCommand(hostcmd.NewSocket(opts))
	root.AddCommand(machineCmd(opts), versionCmd(), hostAgentCmd(), hostcmd.NewDoctor(opts), system,
		swarmCmd(opts), netgroupSwitchCmd(opts))
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.Execute(); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		fmt.Fprintf(stderr, "skiff: %v\n", err)
		return exitCode(err)
	}
	return 0
}

// exitCode is the one place a failure's class becomes the exit status, so that scripts
// can tell "no such machine" from "it is running" without reading the message.
func exitCode(err error) int {
	switch {
	case errors.Is(err, machine.ErrInvalid):
		return 2
	case errors.Is(err, machine.ErrNotFound):
		return 3
	case errors.Is(err, machine.ErrExists):
		return 4
	case errors.Is(err, machine.ErrState), errors.Is(err, machine.ErrBusy):
		return 5
	case errors.Is(err, vmm.ErrNotSupported):
		return 6
	case errors.Is(err, vmm.ErrNeedAdmin):
		return 7
	}
	return 1
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			img := images.DefaultRef // a release pins URL@sha256:DIGEST here
			if img == "" {
				img = "none built in (pass --image)"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "skiff %s\nimage %s\n", installer.Version, img)
		},
	}
}
