package guestinit

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/skiff-dev/skiff/forward"
)

// mountEntry is one line of a mountinfo file.
type mountEntry struct {
	dev   string // major:minor of the mounted file system
	point string
}

// readMountinfo reads the mounts of a mountinfo file.
func readMountinfo(path string) ([]mountEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	var mounts []mountEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint ...; spaces in names are octal-escaped.
		if fs := strings.Fields(sc.Text()); len(fs) > 4 {
			mounts = append(mounts, mountEntry{dev: fs[2], point: forward.UnescapeMountinfo(fs[4])})
		}
	}
	return mounts, sc.Err()
}

// devOf is the major:minor of the file system path is on, as mountinfo writes it.
func devOf(path string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev)), nil
}

// holder is a process whose mount namespace still has a file system mounted.
type holder struct {
	point, pid, comm string
	container        string // the engine's ID of the container the process is in, if any
}

// mountedElsewhere finds a process, in any mount namespace, where the file system dev is
// still mounted (nil where none): a container's bind mount of a share is in the
// container's namespace, and outlives the share's unmount in the guest's own.
func mountedElsewhere(proc, dev string) (*holder, error) {
	pids, err := filepath.Glob(filepath.Join(proc, "[0-9]*"))
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, p := range pids {
		ns, err := os.Readlink(filepath.Join(p, "ns", "mnt"))
		if err != nil || seen[ns] {
			continue // gone, or a namespace already read
		}
		seen[ns] = true
		mounts, err := readMountinfo(filepath.Join(p, "mountinfo"))
		if err != nil {
			continue
		}
		for _, m := range mounts {
			if m.dev == dev {
				comm, _ := os.ReadFile(filepath.Join(p, "comm"))
				cg, _ := os.ReadFile(filepath.Join(p, "cgroup"))
				return &holder{point: m.point, pid: filepath.Base(p), comm: strings.TrimSpace(string(comm)),
					container: containerOfCgroup(string(cg))}, nil
			}
		}
	}
	return nil, nil
}

// containerIDRE is a container's ID as the engines name its cgroup: dockerd's cgroupfs
// driver /docker/ID, systemd's docker-ID.scope, Podman's libpod-ID(.scope[/container]).
var containerIDRE = regexp.MustCompile(`/(?:docker-|libpod-)?([0-9a-f]{64})(?:\.scope)?(?:/container)?$`)

// containerOfCgroup is the ID of the container a /proc/PID/cgroup file places its
// process in, or "".
func containerOfCgroup(cgroup string) string {
	for _, l := range strings.Split(strings.TrimSpace(cgroup), "\n") {
		// hierarchy-ID:controllers:path; cgroup v2 has the one line 0::path.
		if _, path, ok := strings.Cut(l, "::"); ok {
			if m := containerIDRE.FindStringSubmatch(path); m != nil {
				return m[1]
			}
		}
	}
	return ""
}
