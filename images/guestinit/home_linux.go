package guestinit

import (
	"bytes"
	"os"

	"github.com/skiff-dev/skiff/forward/pathmap"
)

// guestRootHome is root's home in the guest when a share covers the image's: a Linux
// host run as root shares its own /root there, and every `machine ssh` then ran the
// host's dotfiles in the guest (a pyenv init took 8 s of emulated CPU per login, and a
// login cut short left pyenv's lock behind in the host's home, stalling its own shells).
// Lima keeps the guest's home apart from the host's for the same reason.
const guestRootHome = DataMount + "/root-home"

// separateRootHome points root's home in passwd away from the shares (guest paths), and
// makes the new one; it leaves a home no share covers as it is.
func separateRootHome(passwd string, shares []string) error {
	data, err := os.ReadFile(passwd)
	if err != nil {
		return err
	}
	out, moved := rehome(data, shares, guestRootHome)
	if !moved {
		return nil
	}
	if err := os.MkdirAll(guestRootHome, 0o700); err != nil {
		return err
	}
	tmp := passwd + ".skiff"
	if err := os.WriteFile(tmp, out, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, passwd)
}

// rehome gives root's passwd entry the home newHome when one of shares covers its home.
func rehome(passwd []byte, shares []string, newHome string) ([]byte, bool) {
	lines := bytes.Split(passwd, []byte("\n"))
	for i, l := range lines {
		// name:password:uid:gid:gecos:home:shell
		f := bytes.Split(l, []byte(":"))
		if len(f) != 7 || string(f[0]) != "root" {
			continue
		}
		for _, g := range shares {
			if pathmap.Within(string(f[5]), g) {
				f[5] = []byte(newHome)
				lines[i] = bytes.Join(f, []byte(":"))
				return bytes.Join(lines, []byte("\n")), true
			}
		}
	}
	return passwd, false
}
