package machine

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/skiff-dev/skiff/installer/hostenv"
)

// Docker Swarm across the machines of one network group: Skiff only asks each machine's
// own engine to init, join or leave, advertising the machine's address on the group's
// network, so that managers, workers and overlay traffic (VXLAN) meet only there.

// swarmPort is where managers listen for nodes (Docker's default).
const swarmPort = "2377"

// heartbeatPeriod is how often nodes report to the manager: Docker's 5 s marks a node
// down after 15 s without one, which an emulated VM (TCG) on a busy host misses, and the
// swarm then shuts down and reschedules tasks that were fine. A stopped machine's node is
// seen down after a minute instead. The rest of the swarm's settings stay Docker's.
const heartbeatPeriod = 20 * time.Second

// SwarmNode is a machine's place in its swarm.
type SwarmNode struct {
	Machine string
	Address string // on the network group
	NodeID  string
}

// swarmEngine is the engine client of a running Docker machine on a network group.
func (m *Manager) swarmEngine(ctx context.Context, name string) (*client.Client, *Spec, error) {
	d, s, err := m.Machine(name)
	if err != nil {
		return nil, nil, err
	}
	if s.Engine != EngineDocker {
		return nil, nil, ErrInvalidf("%s runs %s, which has no Swarm: use a docker machine", name, s.Engine)
	}
	if s.NetworkGroup == "" || s.GroupLease == nil {
		return nil, nil, &Error{Name: name, Class: ErrInvalid, Detail: "is on no network group, so other machines cannot reach it",
			Hint: "stop it and run: skiff machine set --network-group GROUP" + nameSuffix(name)}
	}
	if st := d.Status(ctx); st.State != StateRunning {
		return nil, nil, wrongState(name, st.State, "start it first")
	}
	c, err := client.New(client.WithHost(hostenv.EngineHost(d.EngineEndpoint())), client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, nil, err
	}
	return c, s, nil
}

// SwarmInit makes the machine's engine the manager of a new swarm.
func (m *Manager) SwarmInit(ctx context.Context, name string) (*SwarmNode, error) {
	c, s, err := m.swarmEngine(ctx, name)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	addr := s.GroupLease.Address
	res, err := c.SwarmInit(ctx, client.SwarmInitOptions{ListenAddr: net.JoinHostPort(addr, swarmPort), AdvertiseAddr: addr,
		Spec: swarm.Spec{Dispatcher: swarm.DispatcherConfig{HeartbeatPeriod: heartbeatPeriod}}})
	if err != nil {
		return nil, fmt.Errorf("swarm init on %s: %w", name, err)
	}
	return &SwarmNode{Machine: name, Address: addr, NodeID: res.NodeID}, nil
}

// SwarmJoinOptions say how a machine joins a manager's swarm.
type SwarmJoinOptions struct {
	// Manager is the machine whose swarm to join; it must be one of its managers.
	Manager string
	// AsManager joins as a manager rather than a worker.
	AsManager bool
}

// SwarmJoin makes the machine's engine a node of the swarm o.Manager manages. Both
// machines must be on one network group.
func (m *Manager) SwarmJoin(ctx context.Context, name string, o SwarmJoinOptions) (*SwarmNode, error) {
	if name == o.Manager {
		return nil, ErrInvalidf("%s cannot join its own swarm", name)
	}
	mc, ms, err := m.swarmEngine(ctx, o.Manager)
	if err != nil {
		return nil, err
	}
	defer mc.Close()
	c, s, err := m.swarmEngine(ctx, name)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if s.NetworkGroup != ms.NetworkGroup {
		return nil, ErrInvalidf("%s is on network group %s and %s on %s: they cannot reach each other", name, s.NetworkGroup, o.Manager, ms.NetworkGroup)
	}
	sw, err := mc.SwarmInspect(ctx, client.SwarmInspectOptions{})
	if err != nil {
		return nil, fmt.Errorf("swarm join: %s is no swarm manager (run: skiff swarm init %s): %w", o.Manager, o.Manager, err)
	}
	token := sw.Swarm.JoinTokens.Worker
	if o.AsManager {
		token = sw.Swarm.JoinTokens.Manager
	}
	addr := s.GroupLease.Address
	if _, err := c.SwarmJoin(ctx, client.SwarmJoinOptions{
		ListenAddr: net.JoinHostPort(addr, swarmPort), AdvertiseAddr: addr,
		RemoteAddrs: []string{net.JoinHostPort(ms.GroupLease.Address, swarmPort)}, JoinToken: token,
	}); err != nil {
		return nil, fmt.Errorf("swarm join of %s to %s: %w", name, o.Manager, err)
	}
	info, err := c.Info(ctx, client.InfoOptions{})
	node := &SwarmNode{Machine: name, Address: addr}
	if err == nil {
		node.NodeID = info.Info.Swarm.NodeID
	}
	return node, nil
}

// SwarmLeave makes the machine's engine leave its swarm; force is needed for a manager.
func (m *Manager) SwarmLeave(ctx context.Context, name string, force bool) error {
	c, _, err := m.swarmEngine(ctx, name)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.SwarmLeave(ctx, client.SwarmLeaveOptions{Force: force}); err != nil {
		return fmt.Errorf("swarm leave of %s: %w", name, err)
	}
	return nil
}
