//go:build linux

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/images"
	"github.com/skiff-dev/skiff/machine/machinetest"
)

// TestKubernetes runs a machine with Kubernetes (issue 26): the node Ready through the
// host's kubectl and the kubeconfig context Skiff merged, a Deployment of an image the
// machine's docker built (no registry), a NodePort and a LoadBalancer service answering on
// the host's loopback, kubectl logs -f and exec with stdin, the node Ready again after a
// warm and a cold restart, and rm taking the kubeconfig entries away.
func TestKubernetes(t *testing.T) {
	e := machinetest.New(t)
	arch := requireKubeLayer(t, e.Image)
	kubectlBin := hostKubectl(t, e.Image, arch)
	// The kubeconfig Skiff merges into is the test's, not the user's: the host agent
	// inherits KUBECONFIG from the start command.
	kubeconfig := filepath.Join(t.TempDir(), "kube", "config")
	t.Setenv("KUBECONFIG", kubeconfig)
	kubectl := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, kubectlBin, append([]string{"--context", "skiff"}, args...)...).CombinedOutput()
		return string(out), err
	}
	mustKubectl := func(args ...string) string {
		t.Helper()
		out, err := kubectl(args...)
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	began := time.Now()
	phase := func(what string) { t.Logf("%6.1fs %s", time.Since(began).Seconds(), what) }
	t.Cleanup(func() {
		// Registered after the machine's clean-up: runs first, while it is still there.
		if t.Failed() {
			for _, args := range [][]string{{"get", "nodes", "-o", "wide"}, {"get", "pods", "-A", "-o", "wide"}, {"describe", "pods", "-l", "app=web"}, {"get", "events", "-A"}} {
				out, err := kubectl(args...)
				t.Logf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			out, _ := e.Run("machine", "ssh", "--", "tail -n 40 /var/log/kube/*.log")
			t.Logf("guest kube logs:\n%s", out)
		}
	})

	e.Must("machine", "init", "--cpus", "2", "--memory", "3G", "--disk-size", "8G", "--no-home-share", "--kubernetes")
	if out := e.Must("machine", "inspect", "--format", "{{.Spec.Kubernetes}}"); strings.TrimSpace(out) != "true" {
		t.Fatalf("inspect: kubernetes %q", out)
	}
	start := func(args ...string) {
		t.Helper()
		began := time.Now()
		e.Must(append([]string{"machine", "start"}, args...)...)
		phase("machine started")
		nodeReady(t, kubectl, kubeconfig, began)
		t.Logf("node Ready %.1fs after start", time.Since(began).Seconds())
	}
	start()
	phase("node Ready (first boot)")
	if out := e.Must("machine", "inspect", "--format", "{{.Kubernetes.Kubeconfig}} {{.Kubernetes.Name}}"); strings.TrimSpace(out) != kubeconfig+" skiff" {
		t.Fatalf("inspect: kubernetes %q", out)
	}

	// An image the machine's docker builds is what pods run: no registry.
	e.LoadBusybox("default")
	ctxDir := t.TempDir()
	os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM "+machinetest.TestImage+"\n"+
		"RUN mkdir /www && echo hello-from-web > /www/index.html\n"+
		`CMD ["sh", "-c", "busybox httpd -p 8080 -h /www; i=0; while true; do i=$((i+1)); echo tick-$i; sleep 1; done"]`+"\n"), 0o644)
	e.MustDocker("default", "build", "-t", "skiff-test/web:1", ctxDir)
	phase("image built")

	nodePort := freeNodePort(t)
	lbPort := machinetest.FreePort(t)
	manifest := fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: skiff-test/web:1
        imagePullPolicy: Never
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-np}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: %d}]
---
apiVersion: v1
kind: Service
metadata: {name: web-lb}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: %d, targetPort: 8080}]
`, nodePort, lbPort)
	mf := filepath.Join(t.TempDir(), "web.yaml")
	os.WriteFile(mf, []byte(manifest), 0o644)
	mustKubectl("apply", "-f", mf)
	machinetest.Eventually(t, 10*time.Minute, "deployment web available", func() bool {
		out, _ := kubectl("get", "deploy", "web", "-o", "jsonpath={.status.availableReplicas}")
		return strings.TrimSpace(out) == "1"
	})
	phase("deployment available")

	answers := func(what string, port int) {
		t.Helper()
		machinetest.Eventually(t, 3*time.Minute, fmt.Sprintf("%s answering on 127.0.0.1:%d", what, port), func() bool {
			return get(port) == "hello-from-web"
		})
	}
	answers("the NodePort service", nodePort)
	answers("the LoadBalancer service", lbPort)
	machinetest.Eventually(t, time.Minute, "the LoadBalancer's address", func() bool {
		out, _ := kubectl("get", "svc", "web-lb", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip} {.status.loadBalancer.ingress[0].hostname}")
		return strings.TrimSpace(out) == "127.0.0.1 localhost"
	})
	phase("services answer on the host")

	// logs -f follows: two new ticks arrive while it runs.
	followLogs(t, kubectlBin)
	phase("logs -f follows")
	// exec with stdin: what the host types reaches the container and back.
	cmd := exec.Command(kubectlBin, "--context", "skiff", "exec", "-i", "deploy/web", "--", "sh", "-c", "read x; echo got-$x; cat /www/index.html")
	cmd.Stdin = strings.NewReader("ping\n")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "got-ping") || !strings.Contains(string(out), "hello-from-web") {
		t.Fatalf("kubectl exec -i: %v\n%s", err, out)
	}
	execTTY(t, kubectlBin)
	phase("exec -i and -it")

	// Suspended and resumed, then shut down and booted: the node is Ready again each time
	// and the services answer.
	e.Must("machine", "stop")
	phase("stopped (suspended)")
	start()
	answers("the NodePort service after a warm start", nodePort)
	phase("warm start: node Ready, service answers")
	e.Must("machine", "stop", "--cold")
	phase("stopped (cold)")
	start()
	answers("the LoadBalancer service after a cold start", lbPort)
	phase("cold start: node Ready, service answers")

	e.Must("machine", "rm", "-f")
	b, err := os.ReadFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "skiff") {
		t.Fatalf("rm left Skiff's entries in the kubeconfig:\n%s", b)
	}
	phase("rm removed the kubeconfig entries")
}

// requireKubeLayer skips when the image has no Kubernetes layer: CI builds one only when
// it is cached (.ci/test-all says so). It returns the image's architecture.
func requireKubeLayer(t *testing.T, dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := images.ParseManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range m.Files {
		if f.Role == images.RoleKube {
			if f.Name != "kube.squashfs.zst" {
				t.Fatalf("the Kubernetes layer is %s; this test unpacks kube.squashfs.zst", f.Name)
			}
			return m.Arch
		}
	}
	t.Skipf("the image at %s has no Kubernetes layer: build it with `make image-kube` (a cold build is ~20 min)", dir)
	return ""
}

// hostKubectl is kubectl for the host: SKIFF_KUBECTL, else the multi-call binary of
// images/kube run by the name kubectl: the layer's own copy when the image is for this
// host's architecture, else built for this host (seconds when the layer's build left the
// Go build cache warm, ~20 min cold).
func hostKubectl(t *testing.T, image string, arch string) string {
	if p := os.Getenv("SKIFF_KUBECTL"); p != "" {
		return p
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "kube")
	if arch == runtime.GOARCH {
		sq := filepath.Join(dir, "kube.squashfs")
		cmd := exec.Command("sh", "-c", `zstd -dcq "$1" > "$2" && unsquashfs -q -n -d "$3" "$2" bin/kube && mv "$3/bin/kube" "$4" && rm "$2"`,
			"sh", filepath.Join(image, "kube.squashfs.zst"), sq, filepath.Join(dir, "layer"), bin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kubectl from the Kubernetes layer: %v\n%s", err, out)
		}
	} else {
		build := exec.Command("bash", filepath.Join(machinetest.RepoRoot(t), "images", "kube", "build.sh"), runtime.GOARCH, bin)
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build kubectl (images/kube): %v\n%s", err, out)
		}
	}
	kubectl := filepath.Join(dir, "kubectl")
	if err := os.Symlink(bin, kubectl); err != nil {
		t.Fatal(err)
	}
	return kubectl
}

// nodeReady waits for the kubeconfig context and then the node's Ready condition, from a
// kubelet that renewed the node's lease after since: after a restart, the Ready kept in
// etcd from before is stale until the kubelet reports again.
func nodeReady(t *testing.T, kubectl func(...string) (string, error), kubeconfig string, since time.Time) {
	t.Helper()
	machinetest.Eventually(t, 10*time.Minute, "the skiff context in "+kubeconfig, func() bool {
		b, _ := os.ReadFile(kubeconfig)
		return strings.Contains(string(b), "name: skiff")
	})
	machinetest.Eventually(t, 10*time.Minute, "node Ready", func() bool {
		out, _ := kubectl("get", "nodes", "-o", `jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{end}`)
		if strings.TrimSpace(out) != "True" {
			return false
		}
		out, _ = kubectl("get", "lease", "-n", "kube-node-lease", "default", "-o", "jsonpath={.spec.renewTime}")
		renewed, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(out))
		return err == nil && renewed.After(since)
	})
}

// followLogs runs kubectl logs -f and waits for two lines it had not printed at first.
func followLogs(t *testing.T, kubectl string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubectl, "--context", "skiff", "logs", "-f", "--tail=1", "deploy/web")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); cmd.Wait() }()
	sc := bufio.NewScanner(out)
	var ticks []int
	for len(ticks) < 3 && sc.Scan() {
		if n, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "tick-")); err == nil {
			ticks = append(ticks, n)
		}
	}
	if len(ticks) < 3 || ticks[2] <= ticks[0] {
		t.Fatalf("kubectl logs -f: ticks %v (%v)", ticks, sc.Err())
	}
}

// execTTY runs kubectl exec -it under a pseudo-terminal (script(1) gives it one) and
// checks that the container's shell saw a terminal.
func execTTY(t *testing.T, kubectl string) {
	t.Helper()
	script, err := exec.LookPath("script")
	if err != nil {
		t.Log("kubectl exec -it not run: script(1) is missing (bsdutils)")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	line := kubectl + " --context skiff exec -it deploy/web -- sh -c 'test -t 0 && echo tty-yes; read x; echo got-$x'"
	cmd := exec.CommandContext(ctx, script, "-qec", line, "/dev/null")
	cmd.Stdin = strings.NewReader("pong\n")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "tty-yes") || !strings.Contains(string(out), "got-pong") {
		t.Fatalf("kubectl exec -it: %v\n%s", err, out)
	}
}

// freeNodePort is a port in Kubernetes' NodePort range that this host has free.
func freeNodePort(t *testing.T) int {
	t.Helper()
	for p := 30000 + int(time.Now().UnixNano()%2000); p < 32767; p++ {
		ln, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(p))
		if err == nil {
			ln.Close()
			return p
		}
	}
	t.Fatal("no free port in 30000-32767")
	return 0
}
