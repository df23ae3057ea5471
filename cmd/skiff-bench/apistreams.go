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
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// streamOptions are the large-stream part of bench-api.
type streamOptions struct {
	mb, buildMB, rounds int
	profile             string
}

// streamOp is one large stream through an engine socket; run returns the bytes that
// crossed it and, where the command does more than the stream, the stream's own time
// (0: the command's).
type streamOp struct {
	name string
	run  func(ctx context.Context, sock string) (int64, time.Duration, error)
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
		if err := cli(skiffSock, nil, nil, "run", "-d", "--name", "logbox", "--log-opt", "max-size=1g", sinkImage, "/skiff-bench", "api", "-emit", fmt.Sprint(o.mb)); err != nil {
			return err
		}
		if err := cli(skiffSock, nil, nil, "wait", "logbox"); err != nil {
			return err
		}
		layer, err := imageLayer(in)
		if err != nil {
			return err
		}
		if err := cli(skiffSock, bytes.NewReader(layer), nil, "import", "-", "skiff-bench/big"); err != nil {
			return err
		}
		layer = nil
		discard := func(args ...string) func(ctx context.Context, sock string) (int64, time.Duration, error) {
			return func(ctx context.Context, sock string) (int64, time.Duration, error) {
				var w countWriter
				err := cli(sock, nil, &w, args...)
				return w.n, 0, err
			}
		}
		ops = append(ops,
			streamOp{"docker cp in", func(ctx context.Context, sock string) (int64, time.Duration, error) {
				return size, 0, cli(sock, nil, nil, "cp", in, "cpbox:/stream.bin")
			}},
			streamOp{"docker cp out", discard("cp", "cpbox:/stream.bin", "-")},
			streamOp{"docker logs", discard("logs", "logbox")},
			streamOp{"docker save", discard("save", "skiff-bench/big")},
		)
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
			ops = append(ops, streamOp{"build context", func(ctx context.Context, sock string) (int64, time.Duration, error) {
				if err := freshContext(dir, o.buildMB); err != nil {
					return 0, 0, err
				}
				x, err := timedBuild(sock, config, dir)
				return int64(x.mb * 1e6), x.transfer, err
			}})
		}
	}
	paths := []struct{ name, sock string }{{"skiff", skiffSock}, {"ssh-forward", sshSock}}
	type result struct {
		wall []time.Duration
		hops []hopCPU
		mb   float64
	}
	res := map[string]*result{}
	fmt.Printf("\nlarge streams, %d rounds, alternating paths:\n", o.rounds)
	for r := 0; r < o.rounds; r++ {
		for _, op := range ops {
			for _, p := range paths {
				h0, err := sampleHops(c, d)
				if err != nil {
					return err
				}
				t0 := time.Now()
				nb, own, err := op.run(ctx, p.sock)
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
				mb := float64(nb) / 1e6
				fmt.Printf("round %d %-14s %-12s %6.1f MB in %6.2fs = %6.1f MB/s\n", r, op.name, p.name, mb, el.Seconds(), mb/el.Seconds())
				k := op.name + "/" + p.name
				if res[k] == nil {
					res[k] = &result{}
				}
				res[k].wall = append(res[k].wall, el)
				res[k].hops = append(res[k].hops, h1.since(h0))
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
		fmt.Printf("    CPU per MB by hop, skiff:       %s\n", medianHops(s.hops).format(s.mb, time.Millisecond, "ms"))
		fmt.Printf("    CPU per MB by hop, ssh-forward: %s\n", medianHops(h.hops).format(h.mb, time.Millisecond, "ms"))
	}
	return nil
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
