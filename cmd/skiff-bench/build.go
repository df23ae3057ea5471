package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"
)

// transferRE matches BuildKit's plain progress line for the context upload, as in
// "#5 transferring context: 104.87MB 3.2s done".
var transferRE = regexp.MustCompile(`transferring context: ([0-9.]+)([kMG]?B) ([0-9.]+)s done`)

// buildResult is one timed build: its wall time, and BuildKit's own figures for the upload.
type buildResult struct {
	wall, transfer time.Duration
	mb             float64 // context sent, in MB (10^6 bytes)
}

// timedBuild runs `docker buildx build` of dir against the engine socket sock.
func timedBuild(sock, config, dir string) (buildResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	docker := func(args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, "docker", args...)
		cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+sock, "DOCKER_CONFIG="+config)
		return cmd
	}
	start := time.Now()
	out, err := docker("buildx", "build", "--progress=plain", "--no-cache", "-t", "skiff-bench/build", dir).CombinedOutput()
	wall := time.Since(start)
	if err != nil {
		return buildResult{}, fmt.Errorf("docker buildx build: %v\n%s", err, out)
	}
	// Not timed: the next round starts from an empty build cache and a free disk.
	if out, err := docker("builder", "prune", "-af").CombinedOutput(); err != nil {
		return buildResult{}, fmt.Errorf("docker builder prune: %v\n%s", err, out)
	}
	docker("rmi", "skiff-bench/build").Run()
	// The largest upload is the context's (.dockerignore and the Dockerfile come first).
	var x buildResult
	for _, m := range transferRE.FindAllSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		secs, _ := strconv.ParseFloat(string(m[3]), 64)
		if mb := v * map[string]float64{"B": 1e-6, "kB": 1e-3, "MB": 1, "GB": 1e3}[string(m[2])]; mb > x.mb {
			x = buildResult{wall: wall, transfer: time.Duration(secs * float64(time.Second)), mb: mb}
		}
	}
	if x.transfer == 0 {
		return buildResult{}, fmt.Errorf("no \"transferring context\" line in the build's progress:\n%s", out)
	}
	return x, nil
}

// freshContext rewrites the context's files with new random bytes, so that BuildKit's file
// sync, which keeps what an earlier build sent, sends all of them again.
func freshContext(dir string, mb int) error {
	chunk := make([]byte, 1<<20)
	for i := 0; i < mb; i++ {
		rand.Read(chunk)
		if err := os.WriteFile(filepath.Join(dir, "data", fmt.Sprintf("f%04d", i)), chunk, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// benchBuild compares `docker buildx build` of a large context through Skiff's socket with
// the same build through an ssh-forwarded socket to the same engine in the same VM (how
// podman machine and Lima bring the API to the host), alternating rounds.
func benchBuild(args []string) error {
	fs := flag.NewFlagSet("build", flag.ExitOnError)
	image, skiff := machineFlags(fs)
	size := fs.Int("mb", 100, "context size in MiB (files of 1 MiB)")
	rounds := fs.Int("rounds", 3, "measured rounds per path, after one warm-up each")
	fs.Parse(args)
	if err := exec.Command("docker", "buildx", "version").Run(); err != nil {
		return fmt.Errorf("docker buildx is needed (installer/dev/deps.sh installs it): %v", err)
	}
	b, cleanup, err := newBench(*skiff)
	if err != nil {
		return err
	}
	defer cleanup()
	ctx := context.Background()
	pm, rm, err := b.startPeerMachine("build", *image, "2G", map[string]string{}, "--cpus", "2")
	if err != nil {
		return err
	}
	defer rm()
	sshSock := filepath.Join(b.home, "ssh-docker.sock")
	stop, err := sshForwardedSocket(ctx, pm, sshSock)
	if err != nil {
		return err
	}
	defer stop()
	dir := filepath.Join(b.home, "context")
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return err
	}
	// FROM scratch: no registry is needed. The context goes into a stage of its own, so
	// BuildKit receives all of it, and the image built is one small file.
	dockerfile := "FROM scratch AS ctx\nCOPY . /ctx\n\nFROM scratch\nCOPY --from=ctx /ctx/Dockerfile /\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return err
	}
	config := filepath.Join(b.home, "docker")
	paths := []struct{ name, sock string }{{"skiff", pm.EngineEndpoint()}, {"ssh-forward", sshSock}}
	res := map[string][]buildResult{}
	for r := 0; r <= *rounds; r++ {
		for _, p := range paths {
			if err := freshContext(dir, *size); err != nil {
				return err
			}
			x, err := timedBuild(p.sock, config, dir)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			label := ""
			if r == 0 {
				label = "  warm-up, not counted"
			} else {
				res[p.name] = append(res[p.name], x)
			}
			fmt.Printf("round %d %-12s build %6.2fs  context %.1f MB in %5.2fs = %6.1f MB/s%s\n", r, p.name,
				x.wall.Seconds(), x.mb, x.transfer.Seconds(), x.mb/x.transfer.Seconds(), label)
		}
	}
	med := func(xs []buildResult) (wall, transfer time.Duration, mb float64) {
		var ws, ts []time.Duration
		for _, x := range xs {
			ws, ts = append(ws, x.wall), append(ts, x.transfer)
			mb = x.mb
		}
		return median(ws), median(ts), mb
	}
	sw, st, smb := med(res["skiff"])
	ow, ot, omb := med(res["ssh-forward"])
	fmt.Printf("\ndocker buildx build, %d MiB context, FROM scratch, --no-cache, %d rounds, same VM (medians):\n", *size, *rounds)
	fmt.Printf("  skiff socket:         build %6.2fs (%6.1f MB/s)  context upload %5.2fs (%6.1f MB/s)\n",
		sw.Seconds(), smb/sw.Seconds(), st.Seconds(), smb/st.Seconds())
	fmt.Printf("  ssh-forwarded socket: build %6.2fs (%6.1f MB/s)  context upload %5.2fs (%6.1f MB/s)\n",
		ow.Seconds(), omb/ow.Seconds(), ot.Seconds(), omb/ot.Seconds())
	fmt.Printf("  ratio skiff/ssh: build %.2fx faster, context upload %.2fx faster (goal >= 2x on large streams)\n",
		ow.Seconds()/sw.Seconds(), ot.Seconds()/st.Seconds())
	return nil
}
