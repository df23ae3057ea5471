package main

import (
	"fmt"
	"log"
	"os"

	"github.com/spf13/cobra"

	"github.com/skiff-dev/skiff/cmd/internal/hostcmd"
	"github.com/skiff-dev/skiff/installer/hostenv"
	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/machine/hostagent"
)

// swarmCmd is `skiff swarm init|join|leave`: Docker's own Swarm across the machines of one
// network group (skiff machine init --network-group GROUP).
func swarmCmd(opts hostcmd.Options) *cobra.Command {
	c := &cobra.Command{Use: "swarm", Short: "Make a Docker Swarm of running machines on one network group"}
	c.AddCommand(
		perMachine(&cobra.Command{Use: "init [NAME]", Short: "Make the machine the manager of a new swarm"}, opts,
			func(cmd *cobra.Command, m *machine.Manager, name string) error {
				n, err := m.SwarmInit(cmd.Context(), name)
				if err != nil {
					return err
				}
				d := m.Home.Dir(name)
				fmt.Fprintf(cmd.OutOrStdout(), "Machine %q manages a new swarm at %s (node %s).\n", name, n.Address, n.NodeID)
				fmt.Fprintf(cmd.OutOrStdout(), "Add machines with: skiff swarm join NAME --manager %s\nManage it with:    docker --context %s node ls   (or DOCKER_HOST=%s)\n",
					name, hostenv.ContextName(name), hostenv.EngineHost(d.EngineEndpoint()))
				return nil
			}),
		swarmJoinCmd(opts),
		swarmLeaveCmd(opts),
	)
	return c
}

func swarmJoinCmd(opts hostcmd.Options) *cobra.Command {
	var o machine.SwarmJoinOptions
	c := perMachine(&cobra.Command{Use: "join [NAME] --manager MANAGER", Short: "Make the machine a node of the swarm MANAGER manages"}, opts,
		func(cmd *cobra.Command, m *machine.Manager, name string) error {
			if o.Manager == "" {
				return machine.ErrInvalidf("--manager: name the machine that manages the swarm")
			}
			n, err := m.SwarmJoin(cmd.Context(), name, o)
			if err != nil {
				return err
			}
			role := "worker"
			if o.AsManager {
				role = "manager"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Machine %q joined %s's swarm as a %s at %s.\n", name, o.Manager, role, n.Address)
			return nil
		})
	c.Flags().StringVar(&o.Manager, "manager", "", "the machine that manages the swarm")
	c.Flags().BoolVar(&o.AsManager, "as-manager", false, "join as a manager, not a worker")
	return c
}

func swarmLeaveCmd(opts hostcmd.Options) *cobra.Command {
	var force bool
	c := perMachine(&cobra.Command{Use: "leave [NAME]", Short: "Make the machine leave its swarm"}, opts,
		func(cmd *cobra.Command, m *machine.Manager, name string) error {
			if err := m.SwarmLeave(cmd.Context(), name, force); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Machine %q left its swarm.\n", name)
			return nil
		})
	c.Flags().BoolVarP(&force, "force", "f", false, "leave even as a manager (the swarm loses it)")
	return c
}

// netgroupSwitchCmd runs a network group's switch; host agents start it.
func netgroupSwitchCmd(opts hostcmd.Options) *cobra.Command {
	return &cobra.Command{
		Use:    hostagent.SwitchCommand + " GROUP",
		Short:  "Run the switch of a network group (started by the host agents of its machines)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := opts.HomeDir()
			if err != nil {
				return err
			}
			l := log.New(os.Stderr, "", log.LstdFlags|log.Lmicroseconds)
			return hostagent.RunSwitch(cmd.Context(), h, args[0], l.Printf)
		},
	}
}
