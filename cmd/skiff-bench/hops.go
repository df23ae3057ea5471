package main

import (
	"encoding/base64"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/skiff-dev/skiff/machine"
)

// hopCPU is the CPU time each hop between a host client and the engine has used so far:
// on the host the Skiff host agent (proxy, user-mode network), QEMU (the emulated CPUs
// and devices), and this program (the load and, for the ssh path, the SSH client); in the
// guest its agent, sshd, the engine, docker-proxy, the benchmark's own program in a
// container or the guest ("guest bench") and the kernel's softirq work (the guest's TCP stack).
type hopCPU map[string]time.Duration

// hopOrder is the order hops are printed in.
var hopOrder = []string{"host agent", "qemu", "bench+ssh client", "docker CLI", "guest agent", "guest sshd", "docker-proxy", "dockerd", "containerd", "guest bench", "guest softirq"}

// guestHopScript prints "name ticks" for the guest processes that carry API streams, and
// the kernel's softirq ticks.
const guestHopScript = `for f in /proc/[0-9]*/stat; do read -r l < "$f" 2>/dev/null || continue; c=${l#*(}; c=${c%%)*}; r=${l##*) }; set -- $r; echo "$c $((${12}+${13}))"; done; set -- $(head -1 /proc/stat); echo "softirq $8"`

// sampleHops reads every hop's CPU time; c reaches the guest (nil: host only).
func sampleHops(c *ssh.Client, d machine.Dir) (hopCPU, error) {
	h := hopCPU{}
	for name, file := range map[string]string{"host agent": machine.FileAgentPID, "qemu": machine.FileVMPID} {
		b, err := os.ReadFile(d.File(file))
		if err != nil {
			return nil, err
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if h[name], err = hopProcCPU(pid); err != nil {
			return nil, err
		}
	}
	self, err := hopProcCPU(os.Getpid())
	if err != nil {
		return nil, err
	}
	h["bench+ssh client"] = self
	if c == nil {
		return h, nil
	}
	out, err := guestRun(c, guestHopScript)
	if err != nil {
		return nil, err
	}
	names := map[string]string{"skiff-agent": "guest agent", "init": "guest agent", "sshd": "guest sshd", "sshd-session": "guest sshd",
		"dockerd": "dockerd", "containerd": "containerd", "docker-proxy": "docker-proxy", "skiff-bench": "guest bench", "softirq": "guest softirq"}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		name, ok := names[f[0]]
		if !ok {
			continue
		}
		t, _ := strconv.ParseInt(f[1], 10, 64)
		h[name] += time.Duration(t) * time.Second / 100
	}
	return h, nil
}

// since is the CPU each hop used after earlier.
func (h hopCPU) since(earlier hopCPU) hopCPU {
	d := hopCPU{}
	for k, v := range h {
		d[k] = v - earlier[k]
	}
	return d
}

// add sums two samples.
func (h hopCPU) add(o hopCPU) {
	for k, v := range o {
		h[k] += v
	}
}

// medianHops is each hop's median over samples.
func medianHops(xs []hopCPU) hopCPU {
	m := hopCPU{}
	keys := map[string]bool{}
	for _, x := range xs {
		for k := range x {
			keys[k] = true
		}
	}
	for k := range keys {
		var v []time.Duration
		for _, x := range xs {
			v = append(v, x[k])
		}
		m[k] = median(v)
	}
	return m
}

// format prints each hop's CPU divided by per ("request", "MB") in unit.
func (h hopCPU) format(per float64, unit time.Duration, unitName string) string {
	var parts []string
	keys := append([]string(nil), hopOrder...)
	var extra []string
	for k := range h {
		found := false
		for _, o := range hopOrder {
			found = found || o == k
		}
		if !found {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	for _, k := range append(keys, extra...) {
		x := float64(h[k]) / per / float64(unit)
		if x < 0.5 { // a hop the path does not take
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.0f", k, x))
	}
	return strings.Join(parts, ", ") + " " + unitName
}

// profileGuestAgent records the guest agent's CPU profile (SIGUSR2, cmd/skiff-agent) while
// work runs and writes it to path.
func profileGuestAgent(c *ssh.Client, path string, work func() error) error {
	const file = "/run/skiff-agent-cpu.pprof"
	if _, err := guestRun(c, "rm -f "+file+"; kill -USR2 1"); err != nil {
		return err
	}
	werr := work()
	out, err := guestRun(c, "kill -USR2 1; for i in $(seq 50); do test -s "+file+" && break; sleep 0.2; done; base64 -w0 "+file)
	if werr != nil {
		return werr
	}
	if err != nil {
		return fmt.Errorf("guest agent profile (an agent older than SIGUSR2 profiling?): %w", err)
	}
	data, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out))
	if err != nil {
		return err
	}
	fmt.Printf("guest agent CPU profile: %s\n", path)
	return os.WriteFile(path, data, 0o644)
}
