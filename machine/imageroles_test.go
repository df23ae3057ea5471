package machine

import (
	"context"
	"slices"
	"testing"

	"github.com/skiff-dev/skiff/images"
	"github.com/skiff-dev/skiff/vmm"
)

// plainBackend boots from the kernel, initrd and disks alone (QEMU, vz).
type plainBackend struct{}

func (plainBackend) Name() string                                      { return "plain" }
func (plainBackend) Check(context.Context) error                       { return nil }
func (plainBackend) Start(context.Context, vmm.Config) (vmm.VM, error) { return nil, nil }

// rootfsBackend boots from the image's WSL root filesystem, which it cannot attach a
// disk beside.
type rootfsBackend struct{ plainBackend }

func (rootfsBackend) ImageRoles() []string       { return []string{images.RoleWSLRootfs} }
func (rootfsBackend) CheckImageDir(string) error { return nil }

// TestImageRoles: a machine installs its own engine's layer and no other engine's, the
// Kubernetes layer only when it runs Kubernetes, and no engine layer where the backend
// boots WSL's tarball (which carries every engine).
func TestImageRoles(t *testing.T) {
	for _, c := range []struct {
		spec Spec
		b    vmm.Backend
		want []string
	}{
		{Spec{Engine: EngineDocker}, plainBackend{}, []string{"engine-docker"}},
		{Spec{Engine: EnginePodman}, plainBackend{}, []string{"engine-podman"}},
		{Spec{Engine: EngineDocker, Kubernetes: true}, plainBackend{}, []string{"engine-docker", images.RoleKube}},
		{Spec{Engine: EnginePodman}, rootfsBackend{}, []string{images.RoleWSLRootfs}},
	} {
		if got := ImageRoles(&c.spec, c.b); !slices.Equal(got, c.want) {
			t.Errorf("%s engine %s, kubernetes %v: roles %v, want %v", c.b.Name(), c.spec.Engine, c.spec.Kubernetes, got, c.want)
		}
	}
	if got := EngineLayerRole(&Spec{Engine: EngineDocker}, rootfsBackend{}); got != "" {
		t.Errorf("a WSL backend attaches the engine layer %q", got)
	}
}
