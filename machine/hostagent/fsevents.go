package hostagent

import (
	"context"
	"net"

	"github.com/skiff-dev/skiff/forward/fsevents"
	"github.com/skiff-dev/skiff/forward/transport"
	"github.com/skiff-dev/skiff/machine/agentapi"
)

// fileEventShares are the shares whose host changes are raised in the guest: writable
// 9p and virtiofs ones (the guest raises events by operations on the mount, which a
// read-only mount refuses; WSL's drvfs is Windows' own).
func (a *Agent) fileEventShares() []fsevents.HostShare {
	if a.Spec.NoFileEvents {
		return nil
	}
	var out []fsevents.HostShare
	for i, m := range a.Spec.Mounts {
		switch typ := a.mountShareType(m); typ {
		case "9p", "virtiofs", shareOverTransport:
			if !m.ReadOnly {
				out = append(out, fsevents.HostShare{Tag: shareTag(i), HostPath: m.HostPath, GuestPath: m.GuestPath, Type: typ})
			}
		}
	}
	return out
}

// startFileEvents has host file changes reach the guest's watchers (forward/fsevents),
// unless the machine turned it off.
func (a *Agent) startFileEvents(ctx context.Context, guest transport.Dialer) {
	shares := a.fileEventShares()
	if len(shares) == 0 {
		return
	}
	h := fsevents.NewHost(fsevents.HostOptions{Shares: shares, Deny: a.skiffData(), Logf: a.logf})
	a.mu.Lock()
	a.fileEvents = h
	a.mu.Unlock()
	a.goAgent(ctx, "file events", func(ctx context.Context) error {
		h.Run(ctx, func(ctx context.Context) (net.Conn, error) { return guest.Dial(ctx, fsevents.Service) })
		return nil
	})
}

// fileEventsState is what inspect shows of file events: nil when they are off.
func (a *Agent) fileEventsState() *agentapi.FileEvents {
	a.mu.Lock()
	h := a.fileEvents
	a.mu.Unlock()
	if h == nil {
		return nil
	}
	return &agentapi.FileEvents{HostWatches: h.Watches()}
}
