package hyperv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/skiff-dev/skiff/vmm"
	"github.com/skiff-dev/skiff/vmm/winexec"
)

// Warm start on Hyper-V: Save-VM keeps the VM's memory and device state with the VM
// itself, and Start-VM of a Saved VM resumes it. The state directory only holds a marker
// naming the VM, so that a restore checks it resumes the VM that was saved.

// savedMarker is the file Suspend writes into the state directory.
const savedMarker = "hyperv-saved.json"

type savedVM struct {
	VM string `json:"vm"`
	ID string `json:"id"`
}

// hypervVersion prints the version of the Hyper-V management service (vmms.exe), which
// changes with the Windows updates that change Hyper-V.
const hypervVersion = `$v = (Get-Item "$env:SystemRoot\System32\vmms.exe").VersionInfo; '{0}.{1}.{2}.{3}' -f $v.FileMajorPart, $v.FileMinorPart, $v.FileBuildPart, $v.FilePrivatePart`

// StateKey implements vmm.Warm: the VM, the shape Skiff gives it and the Hyper-V
// build. Hyper-V keeps the state consistent with its own VM; the key catches a machine
// whose settings changed since the save and a host whose Hyper-V was updated.
func (b *Backend) StateKey(ctx context.Context, cfg vmm.Config) (string, error) {
	ver, err := b.ps(ctx, hypervVersion)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00%d\x00", ver, VMName(cfg.Name), cfg.CPUs, cfg.MemoryMiB)
	for _, d := range b.disks(cfg) {
		fmt.Fprintf(h, "%s\x00", vhdxPath(cfg, d))
	}
	return "hyperv-" + hex.EncodeToString(h.Sum(nil))[:32], nil
}

// CanSuspend implements vmm.Warm: any VM Hyper-V runs can be saved.
func (b *Backend) CanSuspend(vm vmm.VM) error {
	_, err := vmm.Own[*machine]("hyperv", vm)
	return err
}

// Suspend implements vmm.Warm with Save-VM, which writes the state next to the VM's
// configuration and leaves the VHDXs closed. The marker is written first so that a
// failure leaves the VM running and no marker behind.
func (b *Backend) Suspend(ctx context.Context, vm vmm.VM, dir string) error {
	m, err := vmm.Own[*machine]("hyperv", vm)
	if err != nil {
		return err
	}
	marker := filepath.Join(dir, savedMarker)
	data, err := json.Marshal(savedVM{VM: m.name, ID: m.id})
	if err != nil {
		return fmt.Errorf("hyperv: %w", err)
	}
	if err := os.WriteFile(marker, data, 0o600); err != nil {
		return fmt.Errorf("hyperv: %w", err)
	}
	if _, err := m.b.ps(ctx, "Save-VM -Name "+winexec.PSQuote(m.name)); err != nil {
		os.Remove(marker)
		return fmt.Errorf("save VM %s: %w", m.name, err)
	}
	m.finish(nil)
	return nil
}

// Restore implements vmm.Warm: Start-VM resumes the Saved VM the marker in dir names.
func (b *Backend) Restore(ctx context.Context, cfg vmm.Config, dir string) (vmm.VM, error) {
	data, err := os.ReadFile(filepath.Join(dir, savedMarker))
	if err != nil {
		return nil, fmt.Errorf("hyperv: saved state: %w", err)
	}
	var saved savedVM
	if err := json.Unmarshal(data, &saved); err != nil {
		return nil, fmt.Errorf("hyperv: saved state %s: %w", filepath.Join(dir, savedMarker), err)
	}
	name := VMName(cfg.Name)
	if saved.VM != name {
		return nil, fmt.Errorf("hyperv: the saved state belongs to VM %s, not %s", saved.VM, name)
	}
	id, state, err := b.vmInfo(ctx, name)
	switch {
	case err != nil:
		return nil, err
	case id == "":
		return nil, fmt.Errorf("hyperv: VM %s no longer exists; its saved state went with it", name)
	case !strings.EqualFold(id, saved.ID) || !owned(cfg, id):
		return nil, fmt.Errorf("hyperv: VM %s is not the VM that was saved (it was re-created)", name)
	case state != "Saved":
		return nil, fmt.Errorf("hyperv: VM %s is %s, not Saved: there is no state to resume", name, state)
	}
	return b.launch(ctx, cfg)
}

// DiscardState implements vmm.Warm: without it, the next Start-VM would resume
// a state the host agent decided not to use. One Get-VM when there is nothing to drop.
func (b *Backend) DiscardState(ctx context.Context, cfg vmm.Config) error {
	name := VMName(cfg.Name)
	id, state, err := b.vmInfo(ctx, name)
	if err != nil || state != "Saved" || !owned(cfg, id) {
		return err
	}
	// -Confirm:$false: a confirmation prompt would fail under -NonInteractive.
	_, err = b.ps(ctx, fmt.Sprintf("Remove-VMSavedState -VMName %s -Confirm:$false", winexec.PSQuote(name)))
	return err
}

var _ vmm.Warm = (*Backend)(nil)
