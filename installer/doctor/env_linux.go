package doctor

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/skiff-dev/skiff/images"
	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/vmm/qemu"
)

func platformEnv(env *Env, home machine.Home) {
	env.ProbeKVM = func(time.Duration) (string, error) {
		// The same probe the QEMU backend uses to pick its accelerator, so doctor and
		// `machine start` never disagree; doctor waits for its end.
		v := (&qemu.Backend{}).ProbeAccel(runtime.GOARCH, guestKernel(home), qemu.ProbeOptions{})
		how := "probed now"
		if v.Kept {
			how = fmt.Sprintf("the verdict of a probe on %s, kept until the host kernel, CPU or QEMU changes", v.At.Local().Format("2006-01-02 15:04"))
		}
		if v.Accel != "kvm" {
			return how, errString(v.Reason)
		}
		return how, nil
	}
}

type errString string

func (e errString) Error() string { return string(e) }

// guestKernel finds a guest kernel to boot in the probe: one from the image cache, the
// default image, or SKIFF_IMAGE. Without one only the vCPU probe runs.
func guestKernel(home machine.Home) string {
	var dirs []string
	cached, _ := filepath.Glob(filepath.Join(home.CacheDir(), "images", "sha256-*")) // not .partial-* or .changed-*
	dirs = append(dirs, cached...)
	dirs = append(dirs, os.Getenv("SKIFF_IMAGE"), images.DefaultRef)
	for _, d := range dirs {
		if d == "" {
			continue
		}
		if k := filepath.Join(d, "vmlinuz"); fileExists(k) {
			return k
		}
	}
	return ""
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}
