package qemu

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/machine/machinetest"
	"github.com/skiff-dev/skiff/vmm"
	"github.com/skiff-dev/skiff/vmm/vmmtest"
)

// TestHyperVBootVHDX boots the boot disk in the form Hyper-V attaches it, a dynamic VHDX
// (vmm/hyperv converts with Convert-VHD -VHDType Dynamic; here qemu-img convert -O vhdx,
// whose default is dynamic), to engine-ready.
func TestHyperVBootVHDX(t *testing.T) {
	machinetest.Enabled(t)
	b := &Backend{Boot: BootHyperV}
	h := conformance(t, b)
	cfg := h.Config(t)
	vhdx := filepath.Join(vmmtest.TempDir(t), "efi-boot.vhdx")
	raw := filepath.Join(filepath.Dir(cfg.Kernel), vmm.EFIBootDisk)
	if out, err := exec.Command("qemu-img", "convert", "-O", "vhdx", raw, vhdx).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, out)
	}
	out, err := exec.Command("qemu-img", "info", "--output=json", vhdx).Output()
	var info struct {
		Format string `json:"format"`
	}
	if err != nil || json.Unmarshal(out, &info) != nil || info.Format != "vhdx" {
		t.Fatalf("qemu-img info %s: %v %s", vhdx, err, out)
	}
	b.HyperV.Disk = vhdx
	vm := vmmtest.Boot(t, h, cfg)
	vm.Kill(context.Background())
}

// TestBootTimes compares the direct kernel boot with the Hyper-V boot disk under OVMF:
// SKIFF_BOOT_TIMES=N boots each N times, interleaved, one VM at a time, each on a data disk
// formatted by a first boot that is not counted, and logs both medians of the host's time
// from Start to the engine's answer and of the guest's uptime then. A measurement, not a
// check: it fails only when a boot does.
func TestBootTimes(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SKIFF_BOOT_TIMES"))
	if n <= 0 {
		t.Skip("boot time comparison: set SKIFF_BOOT_TIMES=N (and SKIFF_E2E=1)")
	}
	machinetest.Enabled(t)
	modes := []struct {
		name string
		b    *Backend
	}{{"direct kernel", &Backend{}}, {"Hyper-V boot disk under OVMF", &Backend{Boot: BootHyperV}}}
	type times struct{ wall, guest []float64 }
	got := make([]times, len(modes))
	harness := make([]vmmtest.Harness, len(modes))
	cfgs := make([]vmm.Config, len(modes))
	for i, m := range modes {
		harness[i] = conformance(t, m.b)
		cfgs[i] = harness[i].Config(t)
	}
	for round := 0; round <= n; round++ {
		for i, m := range modes {
			start := time.Now()
			vm := vmmtest.Boot(t, harness[i], cfgs[i])
			wall := time.Since(start).Seconds()
			console, _ := os.ReadFile(cfgs[i].SerialLog)
			vm.Kill(context.Background())
			vm.Wait(context.Background())
			up, _ := engineReady(console)
			if round == 0 {
				continue // formatted the data disk
			}
			t.Logf("round %d, %s: engine ready %.2fs after Start, at guest uptime %.2fs", round, m.name, wall, up)
			got[i].wall = append(got[i].wall, wall)
			got[i].guest = append(got[i].guest, up)
		}
	}
	for i, m := range modes {
		t.Logf("%s: median %.2fs from Start to engine-ready, %.2fs guest uptime (%d boots)", m.name, median(got[i].wall), median(got[i].guest), n)
	}
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
