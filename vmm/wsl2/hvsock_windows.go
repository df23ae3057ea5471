package wsl2

import (
	"context"
	"fmt"
	"net"

	"github.com/Microsoft/go-winio"
	"github.com/Microsoft/go-winio/pkg/guid"

	"github.com/skiff-dev/skiff/vmm/winexec"
)

// computeSystems lists running Hyper-V compute systems, the WSL utility VM among them.
// WSL does not publish its VM's ID; this is where Host Compute Service records it.
const computeSystems = `HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion\HostComputeService\VolatileStore\ComputeSystem`

type winHvsock struct{ reg winexec.Registry }

func newHvsock() Hvsock { return winHvsock{reg: winexec.WindowsRegistry{}} }

func (h winHvsock) VMIDs() ([]string, error) {
	keys, err := h.reg.SubKeys(computeSystems)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, k := range keys {
		if _, err := guid.FromString(k); err == nil {
			ids = append(ids, k)
		}
	}
	return ids, nil
}

func (h winHvsock) Dial(ctx context.Context, vmID string, port uint32) (net.Conn, error) {
	id, err := guid.FromString(vmID)
	if err != nil {
		return nil, fmt.Errorf("VM id %q: %w", vmID, err)
	}
	return winio.Dial(ctx, &winio.HvsockAddr{VMID: id, ServiceID: winio.VsockServiceID(port)})
}

func (h winHvsock) Listen(port uint32) (net.Listener, error) {
	return winio.ListenHvsock(&winio.HvsockAddr{VMID: winio.HvsockGUIDWildcard(), ServiceID: winio.VsockServiceID(port)})
}
