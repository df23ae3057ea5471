package hostagent

import (
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
