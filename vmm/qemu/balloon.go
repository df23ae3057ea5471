package qemu

import (
	"context"

	"github.com/skiff-dev/skiff/vmm"
)

// reclaimOf is how a VM of cfg returns memory: free page reporting unless asked for the
// traditional balloon (as vz has it, which the host agent's policy drives) or nothing.
func reclaimOf(cfg vmm.Config) (string, error) {
	return vmm.ReclaimOf("qemu", cfg, vmm.ReclaimFreePageReporting, vmm.ReclaimBalloon, vmm.ReclaimOff)
}

// balloonArg is the balloon device: with free page reporting the guest hands back what
// it frees by itself; otherwise the balloon moves only when the host sets a target.
func balloonArg(cfg vmm.Config) string {
	if r, _ := reclaimOf(cfg); r == vmm.ReclaimFreePageReporting {
		return "virtio-balloon-pci,id=balloon0,free-page-reporting=on"
	}
	return "virtio-balloon-pci,id=balloon0"
}

// Reclaim implements vmm.Reclaimer.
func (v *VM) Reclaim() string { return v.reclaim }

// SetMemoryTarget implements vmm.Balloon with QMP's balloon command, whose value is the
// guest memory to leave, as vz's target is.
func (v *VM) SetMemoryTarget(ctx context.Context, bytes uint64) error {
	return v.withQMP(ctx, func(q *qmp) error {
		return q.run("balloon", map[string]uint64{"value": bytes}, nil)
	})
}

// MemoryTarget implements vmm.Balloon: the guest memory the balloon leaves now.
func (v *VM) MemoryTarget(ctx context.Context) (uint64, error) {
	var r struct {
		Actual uint64 `json:"actual"`
	}
	err := v.withQMP(ctx, func(q *qmp) error { return q.run("query-balloon", nil, &r) })
	return r.Actual, err
}

// withQMP runs fn on a connection of its own: QEMU's monitor serves one client at a time,
// so none is held between calls (a suspend needs it).
func (v *VM) withQMP(ctx context.Context, fn func(*qmp) error) error {
	q, err := dialQMP(ctx, v.qmp)
	if err != nil {
		return err
	}
	defer q.Close()
	return fn(q)
}

var (
	_ vmm.Balloon   = (*VM)(nil)
	_ vmm.Reclaimer = (*VM)(nil)
)
