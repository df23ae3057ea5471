package hostagent

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/skiff-dev/skiff/images/seed"
	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/vmm"
)

func shareTag(i int) string { return "skiff" + strconv.Itoa(i) }

// shareOverTransport is the share type served by the agent's own 9p server.
const shareOverTransport = "9p-transport"

// shareType is the machine's share type: its spec's, or its backend's best.
func (a *Agent) shareType() string {
	if a.Spec.ShareType != "" {
		return a.Spec.ShareType
	}
	return vmm.ShareTypeOf(a.Backend)
}

// skiffData are the host folders no VM may reach through a share: Skiff's home (every
// machine's secret, keys and disks, the image cache) and this machine's sockets.
func (a *Agent) skiffData() []string {
	return []string{a.Dir.HomeRoot(), a.Dir.Run}
}

// mountShareType is how mount m is shared. The hypervisor's own servers (9p, virtiofs)
// serve a whole tree, so a mount that holds Skiff's data (the default home share holds
// Skiff's home) goes through Skiff's 9p server instead, which refuses that data. WSL's
// drvfs is the distro's own: root in it can mount any drive, so it stays as it is.
func (a *Agent) mountShareType(m machine.Mount) string {
	typ := a.shareType()
	if typ != "9p" && typ != "virtiofs" {
		return typ
	}
	for _, p := range a.skiffData() {
		if within(p, m.HostPath) {
			return shareOverTransport
		}
	}
	return typ
}

// within reports whether path is root or below it, after symlinks (macOS's /var is
// /private/var).
func within(path, root string) bool {
	real := func(p string) string {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return r
		}
		return filepath.Clean(p)
	}
	rel, err := filepath.Rel(real(root), real(path))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(os.PathSeparator)) && !filepath.IsAbs(rel)
}

// seedShare is mount i as the guest mounts it. A drvfs share (WSL) is tagged with its
// Windows folder, which the guest mounts itself (`mount -t drvfs`): the distro automounts
// no drive.
func seedShare(i int, m machine.Mount, shareType string) seed.Share {
	tag := shareTag(i)
	if shareType == "drvfs" {
		tag = m.HostPath
	}
	return seed.Share{Tag: tag, GuestPath: m.GuestPath, ReadOnly: m.ReadOnly, Type: shareType}
}
