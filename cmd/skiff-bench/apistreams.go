package main

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// streamOptions are the large-stream part of bench-api.
type streamOptions struct {
	mb, buildMB, rounds int
	profile             string
	logDrivers          []string // a logging container per driver; none: the engine's default
}

// streamOp is one large stream through an engine socket; run returns the bytes that
// crossed it and, where the command does more than the stream, the stream's own time
// (0: the command's).
type streamOp struct {
	name string
	run  func(ctx context.Context, sock string) (int64, time.Duration, error)
	// guestGet is the API request the op's stream answers, made by this program in the
	// guest on the engine's own socket (no forwarding: what the engine alone delivers);
	// "" for none.
	guestGet string
}

// dockerAt runs the docker CLI against sock with stdout going to out; it returns the
// CLI's own CPU time (it is the same program on every path, but counted).
func dockerAt(ctx context.Context, sock, config string, stdin io.Reader, out io.Writer, args ...string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+sock, "DOCKER_CONFIG="+config)
	cmd.Stdin = stdin
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = out, &errb
	if cmd.Stdout == nil {
		cmd.Stdout = &errb
	}
	err := cmd.Run()
	if err != nil {
		return 0, fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

// countWriter counts what is written to it.
type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// emitLines writes size bytes of 4 KiB log lines: few enough lines that the engine's log
// decoding costs every path alike and little.
func emitLines(w io.Writer, size int64) error {
	line := bytes.Repeat([]byte("skiff-bench log line "), 4096/21)
	line = append(line[:4095], '\n')
	for left := size; left > 0; left -= int64(len(line)) {
		if _, err := w.Write(line[:min(int64(len(line)), left)]); err != nil {
			return err
		}
	}
	return nil
}

// benchStreams times large streams through Skiff's socket and the ssh-forwarded one,
// alternating paths, with each hop's CPU per MB.
func benchStreams(ctx context.Context, b *bench, pm *peerMachine, c *ssh.Client, sshSock string, o streamOptions) error {
	d := pm.Dir
	config := filepath.Join(b.home, "docker")
	skiffSock := d.EngineEndpoint()
	cli := func(sock string, stdin io.Reader, out io.Writer, args ...string) error {
		_, err := dockerAt(ctx, sock, config, stdin, out, args...)
		return err
	}
	var ops []streamOp
	if o.mb > 0 {
		size := int64(o.mb) << 20
		// Set up through Skiff's socket, untimed: a container to copy into and out of, one
		// that has logged size bytes, and an image of size bytes made here.
		if err := loadSink(ctx, d); err != nil {
			return err
		}
		in := filepath.Join(b.home, "stream.bin")
		if err := writeHostFile(in, size); err != nil {
			return err
		}
		if err := cli(skiffSock, nil, nil, "create", "--name", "cpbox", sinkImage, "/skiff-bench"); err != nil {
			return err
		}
		discard := func(args ...string) func(ctx context.Context, sock string) (int64, time.Duration, error) {
			return func(ctx context.Context, sock string) (int64, time.Duration, error) {
				var w countWriter
				err := cli(sock, nil, &w, args...)
				return w.n, 0, err
			}
		}
		// One container that has logged size bytes per log driver; "" is the engine's default.
		logDrivers := o.logDrivers
		if len(logDrivers) == 0 {
			logDrivers = []string{""}
		}
		var logOps []streamOp
		for _, drv := range logDrivers {
			box, name, args := "logbox", "docker logs", []string{"run", "-d"}
			if drv != "" {
				box, name = "logbox-"+drv, "docker logs "+drv
				args = append(args, "--log-driver", drv)
			}
			args = append(args, "--name", box, "--log-opt", "max-size=1g", sinkImage, "/skiff-bench", "api", "-emit", fmt.Sprint(o.mb))
			if err := cli(skiffSock, nil, nil, args...); err != nil {
				return err
			}
			if err := cli(skiffSock, nil, nil, "wait", box); err != nil {
				return err
			}
			logOps = append(logOps, streamOp{name: name, run: discard("logs", box), guestGet: "/containers/" + box + "/logs?stdout=1&stderr=1"})
		}
		layer, err := imageLayer(in)
		if err != nil {
			return err
		}
		if err := cli(skiffSock, bytes.NewReader(layer), nil, "import", "-", "skiff-bench/big"); err != nil {
			return err
		}
		layer = nil
		ops = append(ops,
			streamOp{name: "docker cp in", run: func(ctx context.Context, sock string) (int64, time.Duration, error) {
				return size, 0, cli(sock, nil, nil, "cp", in, "cpbox:/stream.bin")
			}},
			streamOp{name: "docker cp out", run: discard("cp", "cpbox:/stream.bin", "-"), guestGet: "/containers/cpbox/archive?path=/stream.bin"},
		)
		ops = append(ops, logOps...)
		ops = append(ops, streamOp{name: "docker save", run: discard("save", "skiff-bench/big"), guestGet: "/images/get?names=skiff-bench%2Fbig"})
	}
	if o.buildMB > 0 {
		if err := exec.Command("docker", "buildx", "version").Run(); err != nil {
			fmt.Printf("build context skipped: docker buildx is needed (installer/dev/deps.sh installs it): %v\n", err)
		} else {
			dir := filepath.Join(b.home, "context")
			if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
				return err
			}
			dockerfile := "FROM scratch AS ctx\nCOPY . /ctx\n\nFROM scratch\nCOPY --from=ctx /ctx/Dockerfile /\n"
			if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
				return err
			}
			// BuildKit's own time for the context's upload: the build and the prune
			// after it are not the stream.
			ops = append(ops, streamOp{name: "build context", run: func(ctx context.Context, sock string) (int64, time.Duration, error) {
				if err := freshContext(dir, o.buildMB); err != nil {
					return 0, 0, err
				}
				x, err := timedBuild(sock, config, dir)
				return int64(x.mb * 1e6), x.transfer, err
			}})
		}
	}
	// "in-guest" (no socket) is the engine answering this program in the guest.
	paths := []struct{ name, sock string }{{"skiff", skiffSock}, {"ssh-forward", sshSock}, {"in-guest", ""}}
	type result struct {
		wall []time.Duration
		hops []hopCPU
		segs [][2]float64 // the guest's TCP segments in and out per MB
		mb   float64
	}
	res := map[string]*result{}
	fmt.Printf("\nlarge streams, %d rounds, alternating paths:\n", o.rounds)
	for r := 0; r < o.rounds; r++ {
		for _, op := range ops {
			for _, p := range paths {
				run := op.run
				if p.sock == "" {
					if op.guestGet == "" {
						continue
					}
					run = func(ctx context.Context, _ string) (int64, time.Duration, error) { return guestGet(c, op.guestGet) }
				}
				s0, err := guestSegments(c)
				if err != nil {
					return err
				}
				h0, err := sampleHops(c, d)
				if err != nil {
					return err
				}
				t0 := time.Now()
				nb, own, err := run(ctx, p.sock)
				el := time.Since(t0)
				if own > 0 {
					el = own
				}
				if err != nil {
					return fmt.Errorf("%s %s: %w", p.name, op.name, err)
				}
				h1, err := sampleHops(c, d)
				if err != nil {
					return err
				}
				s1, err := guestSegments(c)
				if err != nil {
					return err
				}
				mb := float64(nb) / 1e6
				fmt.Printf("round %d %-14s %-12s %6.1f MB in %6.2fs = %6.1f MB/s\n", r, op.name, p.name, mb, el.Seconds(), mb/el.Seconds())
				k := op.name + "/" + p.name
				if res[k] == nil {
					res[k] = &result{}
				}
				res[k].wall = append(res[k].wall, el)
				res[k].hops = append(res[k].hops, h1.since(h0))
				res[k].segs = append(res[k].segs, [2]float64{float64(s1[0]-s0[0]) / mb, float64(s1[1]-s0[1]) / mb})
				res[k].mb = mb
			}
		}
	}
	if o.profile != "" && len(ops) > 0 {
		if err := profileAgent(pm.api(), o.profile+"-stream.pprof", func() error {
			return profileGuestAgent(c, o.profile+"-guest-stream.pprof", func() error { _, _, err := ops[0].run(ctx, skiffSock); return err })
		}); err != nil {
			return err
		}
	}
	fmt.Printf("\nlarge streams, same VM, medians of %d rounds (goal: skiff >= 2x ssh):\n", o.rounds)
	for _, op := range ops {
		s, h := res[op.name+"/skiff"], res[op.name+"/ssh-forward"]
		sw, hw := median(s.wall), median(h.wall)
		fmt.Printf("  %-14s skiff %6.1f MB/s, ssh-forward %6.1f MB/s: %.2fx\n", op.name, s.mb/sw.Seconds(), h.mb/hw.Seconds(), hw.Seconds()/sw.Seconds())
		if g := res[op.name+"/in-guest"]; g != nil {
			gw := median(g.wall)
			fmt.Printf("    in the guest on the engine's socket (no forwarding): %6.1f MB/s, %.2fx ssh\n", g.mb/gw.Seconds(), hw.Seconds()/gw.Seconds())
		}
		fmt.Printf("    CPU per MB by hop, skiff:       %s\n", medianHops(s.hops).format(s.mb, time.Millisecond, "ms"))
		fmt.Printf("    CPU per MB by hop, ssh-forward: %s\n", medianHops(h.hops).format(h.mb, time.Millisecond, "ms"))
		if g := res[op.name+"/in-guest"]; g != nil {
			fmt.Printf("    CPU per MB by hop, in-guest:    %s\n", medianHops(g.hops).format(g.mb, time.Millisecond, "ms"))
		}
		si, so := medianSegs(s.segs)
		hi, ho := medianSegs(h.segs)
		fmt.Printf("    guest TCP segments per MB (in/out, the user-mode network's frames): skiff %.0f/%.0f, ssh-forward %.0f/%.0f\n", si, so, hi, ho)
	}
	return nil
}

// guestSegScript prints the guest's TCP segments received and sent so far (/proc/net/snmp).
const guestSegScript = `while read -r k a b c d e f g h i j l m; do [ "$k" = Tcp: ] && [ "$a" != RtoAlgorithm ] && echo "$j $l"; done < /proc/net/snmp; true`

// guestSegments reads the guest's TCP segments received and sent so far: each one is a
// frame through the emulated NIC and the user-mode network.
func guestSegments(c *ssh.Client) ([2]int64, error) {
	var s [2]int64
	out, err := guestRun(c, guestSegScript)
	if err == nil {
		_, err = fmt.Sscan(out, &s[0], &s[1])
	}
	if err != nil {
		return s, fmt.Errorf("guest TCP segments: %q: %w", out, err)
	}
	return s, nil
}

// medianSegs is the median of the segments in and out.
func medianSegs(xs [][2]float64) (in, out float64) {
	var a, b []float64
	for _, x := range xs {
		a, b = append(a, x[0]), append(b, x[1])
	}
	sort.Float64s(a)
	sort.Float64s(b)
	if len(a) == 0 {
		return 0, 0
	}
	return a[len(a)/2], b[len(b)/2]
}

// guestGet makes an API request in the guest on the engine's own socket with this
// program's copy there, discarding the answer; it returns the answer's size and its time
// by the guest's clock.
func guestGet(c *ssh.Client, path string) (int64, time.Duration, error) {
	out, err := guestRun(c, fmt.Sprintf("/tmp/skiff-bench api -inguest /run/docker.sock -get '%s'", path))
	if err != nil {
		return 0, 0, err
	}
	var nb, ns int64
	if _, err := fmt.Sscan(out, &nb, &ns); err != nil {
		return 0, 0, fmt.Errorf("in-guest GET %s: %q: %w", path, out, err)
	}
	return nb, time.Duration(ns), nil
}

// imageLayer is a tar holding the file at path, for docker import.
func imageLayer(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "big.bin", Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
	tw.Write(data)
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
