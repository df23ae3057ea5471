package main

import (
	"log"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/skiff-dev/skiff/cmd/internal/hostcmd"
	"github.com/skiff-dev/skiff/machine/backends"
	"github.com/skiff-dev/skiff/machine/hostagent"
)

func hostAgentCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "hostagent NAME",
		Short:  "Run the host agent of a machine (started by `skiff machine start`)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := manager(hostcmd.Options{})
			if err != nil {
				return err
			}
			d, spec, err := m.Machine(args[0])
			if err != nil {
				return err
			}
			backend, err := backends.Lookup(spec.Backend)
			if err != nil {
				return err
			}
			// The agent lives as long as the machine and mostly waits; keep its heap small
			// rather than fast to grow. No memory limit: the user-mode network's live heap
			// passes any small one during boot and under load, and the collector then runs
			// without pause, taking a host core from the emulated CPUs.
			debug.SetGCPercent(50)
			a := &hostagent.Agent{Dir: d, Spec: spec, Backend: backend,
				Log: log.New(os.Stderr, "", log.LstdFlags|log.Lmicroseconds)}
			if err := a.Run(cmd.Context()); err != nil {
				a.Log.Printf("agent exiting: %v", err)
				return &exitError{code: 1}
			}
			a.Log.Printf("agent exiting: machine stopped")
			return nil
		},
	}
}
