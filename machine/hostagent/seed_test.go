package hostagent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/images/seed"
	"github.com/skiff-dev/skiff/machine"
)

func TestSeedShare(t *testing.T) {
	m := machine.Mount{HostPath: `C:\Users\me\src`, GuestPath: "/mnt/c/Users/me/src", ReadOnly: true}
	for _, c := range []struct {
		typ  string
		want seed.Share
	}{
		{"9p", seed.Share{Tag: "skiff2", GuestPath: m.GuestPath, ReadOnly: true, Type: "9p"}},
		// WSL: the guest mounts the Windows folder itself, so the tag is that folder.
		{"drvfs", seed.Share{Tag: `C:\Users\me\src`, GuestPath: m.GuestPath, ReadOnly: true, Type: "drvfs"}},
	} {
		if got := seedShare(2, m, c.typ); got != c.want {
			t.Errorf("seedShare(%s) = %+v, want %+v", c.typ, got, c.want)
		}
	}
}

func TestMountShareType(t *testing.T) {
	h := machine.Home{Root: filepath.Join(t.TempDir(), "home", ".local", "share", "skiff")}
	userHome := filepath.Dir(filepath.Dir(filepath.Dir(h.Root)))
	other := t.TempDir()
	for _, c := range []struct {
		typ, mount, want string
	}{
		{"9p", userHome, shareOverTransport}, // the default home share holds Skiff's home
		{"virtiofs", h.Root, shareOverTransport},
		{"9p", other, "9p"},
		{"virtiofs", filepath.Join(userHome, "src"), "virtiofs"},
		{"drvfs", userHome, "drvfs"}, // WSL's root can mount any drive anyway
	} {
		a := &Agent{Dir: h.Dir("dev"), Spec: &machine.Spec{ShareType: c.typ}}
		if got := a.mountShareType(machine.Mount{HostPath: c.mount}); got != c.want {
			t.Errorf("%s share of %s: %s, want %s", c.typ, c.mount, got, c.want)
		}
	}
}

func TestVMEnd(t *testing.T) {
	h := machine.Home{Root: t.TempDir()}
	d := h.Dir("dev")
	os.MkdirAll(d.Path, 0o700)
	a := &Agent{Dir: d}
	if got := a.vmEnd(nil); got != "the guest powered off by itself" {
		t.Fatalf("no console: %q", got)
	}
	os.WriteFile(d.File(machine.FileSerialLog), []byte("[ 1.0] skiff-agent: engine docker answers\n[ 9.5] skiff-agent: the engine (dockerd) exited unexpectedly (status -1, signal killed): stopping the machine\n[ 9.9] reboot: Power down\n"), 0o600)
	if got := a.vmEnd(nil); !strings.Contains(got, "the engine (dockerd) exited unexpectedly") {
		t.Fatalf("with a console: %q", got)
	}
}
