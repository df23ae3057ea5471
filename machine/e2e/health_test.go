//go:build linux

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/machine/machinetest"
)

func allocated(t *testing.T, path string) int64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// TestMachineHealth: the clock is corrected after being set wrong, freed disk space goes
// back to the host, and the data disk grows with `set --disk-size`.
func TestMachineHealth(t *testing.T) {
	e := machinetest.New(t)
	e.Must("machine", "init", "--cpus", "2", "--memory", "1G", "--disk-size", "6G", "--no-home-share")
	e.Must("machine", "start")

	// The kernel switches a first container would flip are on before any container runs:
	// the kept cgroup has the memory and cpuset controllers, and the guest logged no error.
	if out := e.Must("machine", "ssh", "--", "cat /sys/fs/cgroup/skiff-keys/cgroup.controllers"); !strings.Contains(out, "memory") || !strings.Contains(out, "cpuset") {
		t.Errorf("the kept cgroup has controllers %q, want memory and cpuset among them", out)
	}
	if b, _ := os.ReadFile(filepath.Join(e.Home, "machines", "default", "serial.log")); bytes.Contains(b, []byte("stay off until then")) {
		t.Errorf("the guest could not pin the kernel's runtime switches:\n%s", b)
	}

	// Kernel module requests go through the image's filter and still load what they ask
	// for (the dummy link type is a module the kernel requests itself); sshd, niced while
	// the engine started, is back to normal priority for the sessions it starts, and bpffs,
	// left until then, is mounted.
	if out := e.Must("machine", "ssh", "--", "cat /proc/sys/kernel/modprobe; ip link add skd0 type dummy && ip link del skd0 && grep -c '^dummy ' /proc/modules; ps -o ni= -p $(pgrep -o -x sshd); grep -c ' /sys/fs/bpf bpf ' /proc/mounts"); strings.Join(strings.Fields(out), " ") != "/usr/libexec/skiff/modprobe-filter 1 0 1" {
		t.Errorf("kernel.modprobe, dummy module loaded, sshd niceness, bpffs mounts: %q; want the filter, 1, 0 and 1", out)
	}

	// dockerd's crun, under both names dockerd runs it by, answers its start-up probes from
	// what the guest recorded once the engine was up (exactly what crun says; a marked
	// record shows where the answer came from), runc is crun, its modprobe is content with
	// what the boot loaded, and the real crun is what containers get: containerd's shims
	// never see these.
	probes := `for i in $(seq 100); do [ -s /var/lib/skiff/cache/runtime/version ] && break; sleep 0.1; done
		for p in features --version; do
			/usr/bin/crun $p >/tmp/crun.out
			for h in crun runc; do /usr/libexec/skiff/dockerd-bin/$h $p | cmp -s - /tmp/crun.out || echo "$h $p differs"; done
		done
		r=/var/lib/skiff/cache/runtime/version; cp $r /tmp/r.bak; echo marker >>$r
		/usr/libexec/skiff/dockerd-bin/runc --version | tail -n 1; cp /tmp/r.bak $r
		readlink -f /usr/sbin/runc
		/usr/libexec/skiff/dockerd-bin/modprobe -va overlay br_netfilter && echo loaded
		tr '\0' '\n' </proc/$(pgrep -o -x dockerd)/environ | grep -c '^PATH=/usr/libexec/skiff/dockerd-bin:'
		tr '\0' '\n' </proc/$(pgrep -o -x containerd)/environ | grep -c dockerd-bin`
	if out, _ := e.Run("machine", "ssh", "--", probes); strings.Join(strings.Fields(out), " ") != "marker /usr/bin/crun loaded 1 0" {
		t.Errorf("runtime probe answers, one from a marked record, what runc is, dockerd's modprobe, dockerd's and containerd's PATH: %q; want the same answers, marker, /usr/bin/crun, loaded, 1 and 0", out)
	}

	// Clock: set it an hour wrong by hand; the host's periodic push must step it back.
	e.Must("machine", "ssh", "--", fmt.Sprintf("date -s @%d", time.Now().Add(-time.Hour).Unix()))
	machinetest.Eventually(t, 60*time.Second, "the guest clock to be corrected", func() bool {
		out, err := e.Run("machine", "ssh", "--", "date +%s.%N")
		if err != nil {
			return false
		}
		g, err := strconv.ParseFloat(strings.TrimSpace(out), 64)
		if err != nil {
			return false
		}
		now := float64(time.Now().UnixNano()) / 1e9
		return g > now-2 && g < now+1 // the ssh round trip under emulation takes a while
	})

	// Disk: write 200MB of random data, delete it, trim, and see the host file shrink.
	disk := filepath.Join(e.Home, "machines", "default", "data.img")
	base := allocated(t, disk)
	e.Must("machine", "ssh", "--", "dd if=/dev/urandom of=/var/lib/skiff/big bs=1M count=200 status=none && sync")
	grown := allocated(t, disk)
	if grown-base < 150<<20 {
		t.Fatalf("writing 200MB grew the host file by only %dMB", (grown-base)>>20)
	}
	e.Must("machine", "ssh", "--", "rm /var/lib/skiff/big && sync && fstrim /var/lib/skiff")
	shrunk := allocated(t, disk)
	if grown-shrunk < 150<<20 {
		t.Fatalf("after delete and trim the host file shrank by only %dMB (%d -> %d)", (grown-shrunk)>>20, grown>>20, shrunk>>20)
	}
	t.Logf("data disk allocation: %dMB -> %dMB after writing 200MB -> %dMB after delete+trim", base>>20, grown>>20, shrunk>>20)

	// Grow: stopped machine, bigger disk, filesystem follows at the next boot.
	if out, err := e.Run("machine", "set", "--disk-size", "10G"); err == nil || !strings.Contains(out, "stop it") {
		t.Fatalf("set on a running machine: err=%v %s", err, out)
	}
	e.Must("machine", "stop")
	if out, err := e.Run("machine", "set", "--disk-size", "4G"); err == nil || !strings.Contains(out, "cannot shrink") {
		t.Fatalf("shrinking the disk: err=%v %s", err, out)
	}
	e.Must("machine", "set", "--disk-size", "10G")
	if st, _ := os.Stat(disk); st.Size() != 10<<30 {
		t.Fatalf("data disk is %d bytes after set --disk-size 10G", st.Size())
	}
	e.Must("machine", "start")
	out := e.Must("machine", "ssh", "--", "df -B1 --output=size /var/lib/skiff | tail -1")
	size, _ := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if size < 9<<30 {
		t.Fatalf("the guest filesystem is %dGB after growing the disk to 10G", size>>30)
	}
}
