// Command skiff is the host CLI: skiff machine init|start|stop|rm|list|inspect|ssh|env|set|logs,
// plus the hidden `skiff hostagent NAME` that owns one running machine.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/skiff-dev/skiff/installer"
)

// exitError carries an exit code for errors that already printed their message.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	root := &cobra.Command{
		Use:           "skiff",
		Short:         "Run containers in a small Linux VM, with the engine brought to your host",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	opts := installer.CommandOptions{}
	system := &cobra.Command{Use: "system", Short: "Host integration: well-known engine endpoints"}
	system.AddCommand(installer.NewSocketCommand(opts))
	root.AddCommand(machineCmd(opts), versionCmd(), hostAgentCmd(), installer.NewDoctorCommand(opts), system)
	if err := root.Execute(); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintf(os.Stderr, "skiff: %v\n", err)
		os.Exit(1)
	}
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintf(cmd.OutOrStdout(), "skiff %s\n", installer.Version) },
	}
}
