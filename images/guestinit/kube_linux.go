package guestinit

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The Kubernetes layer (images/kubelayer.sh) is a squashfs the host attaches as one more
// read-only disk when the machine runs Kubernetes; its state lives on the data disk.
const (
	SerialKube = "skiff-kube"
	// KubeMount is where the layer is mounted: bin/ (the multi-call kube binary and its
	// names, etcd, ctr, the kubectl wrapper), cni/bin, etc/ and images/pause.tar.
	KubeMount = "/opt/kube"
	// KubeDir holds the machine's cluster: its PKI, etcd's data, the kubelet's root and
	// the kubeconfigs.
	KubeDir = DataMount + "/kube"
	// KubeAdminConfig is the cluster-admin kubeconfig (server https://127.0.0.1:6443) the
	// host fetches and merges into its own.
	KubeAdminConfig = KubeDir + "/admin.conf"
	// kubePauseImage is the sandbox image, built with the layer and imported at boot: no
	// registry is reachable to pull one from.
	kubePauseImage = "skiff.local/pause:3.10"
	kubeRunDir     = "/run/skiff/kube"
	kubeLogDir     = "/var/log/kube"
	kubeAPIPort    = 6443
)

// kubeContainerdConfig is containerd's configuration with the CRI plugin on: the image's
// own (rootfs.sh) turns it off for the machines that do not run Kubernetes.
const kubeContainerdConfig = KubeMount + "/etc/containerd.toml"

// mountKubeLayer mounts the layer's disk and puts kubectl on PATH.
func (s *System) mountKubeLayer() error {
	dev, err := WaitDisk(SerialKube, 10*time.Second)
	if err != nil {
		return fmt.Errorf("the Kubernetes layer: %w", err)
	}
	os.MkdirAll(KubeMount, 0o755)
	if err := unix.Mount(dev, KubeMount, "squashfs", unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mount the Kubernetes layer %s: %w", dev, err)
	}
	// The root's overlay is writable (a tmpfs): ssh sessions find kubectl on their PATH.
	os.Symlink(KubeMount+"/bin/kubectl", "/usr/local/bin/kubectl")
	return nil
}

// kubeNode is what the node's configuration depends on.
type kubeNode struct {
	name string
	ip   net.IP
}

// startKube starts the single-node cluster: the PKI and kubeconfigs, the pause image, then
// etcd, the API server and, once it listens, the controller manager, scheduler, kubelet and
// kube-proxy, each restarted by supervise when it exits. It runs in the background: the
// machine is ready when its engine is, and the node becomes Ready after.
func (s *System) startKube(ctx context.Context) error {
	addr, err := netip.ParsePrefix(s.Seed.Network.Address)
	if err != nil {
		return fmt.Errorf("seed: network address: %w", err)
	}
	node := kubeNode{name: s.Seed.Hostname, ip: net.IP(addr.Addr().AsSlice())}
	for _, d := range []string{KubeDir, kubeRunDir, kubeLogDir, KubeDir + "/pod-logs", "/var/log/pods"} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	// Pod logs survive a restart of the machine like the pods' records in etcd do.
	if err := unix.Mount(KubeDir+"/pod-logs", "/var/log/pods", "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind /var/log/pods: %w", err)
	}
	pki, err := ensureKubePKI(KubeDir+"/pki", kubeCerts(node.name, node.ip), time.Now())
	if err != nil {
		return err
	}
	if err := writeKubeFiles(pki, node); err != nil {
		return err
	}
	if err := s.importPause(ctx); err != nil {
		// The kubelet would wait for a sandbox image forever; say why instead.
		return fmt.Errorf("pause image: %w", err)
	}
	Trace("kubernetes: pki, configs and pause image ready")
	go s.syncEngineImages(ctx)
	waited := false
	for _, c := range kubeCommands(pki, node) {
		if c.waitAPI && !waited {
			// Under emulation the API server's start (its post-start hooks: RBAC's
			// bootstrap, the service IP repair) takes minutes of CPU, and fails on its own
			// timeouts if the other components' retries share that CPU.
			if err := waitAPIReady(ctx, pki); err != nil {
				return err
			}
			waited = true
			Trace("kubernetes: the API server is ready")
		}
		go s.supervise(ctx, c.name, c.args)
		if c.name == "etcd" {
			if err := waitTCP(ctx, "127.0.0.1:2379"); err != nil {
				return err
			}
			Trace("kubernetes: etcd listens")
		}
	}
	return nil
}

// kubeCommand is one supervised process of the cluster.
type kubeCommand struct {
	name    string
	args    []string
	waitAPI bool // started once the API server listens
}

func kubeCommands(p *kubePKI, n kubeNode) []kubeCommand {
	f := p.file
	ip := n.ip.String()
	return []kubeCommand{
		{name: "etcd", args: []string{
			"--name=skiff", "--data-dir=" + KubeDir + "/etcd",
			"--listen-client-urls=https://127.0.0.1:2379", "--advertise-client-urls=https://127.0.0.1:2379",
			// One member: its peer port has no peer, and listens on loopback only.
			"--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
			"--initial-cluster=skiff=http://127.0.0.1:2380", "--listen-metrics-urls=http://127.0.0.1:2381",
			"--cert-file=" + f("etcd-server.crt"), "--key-file=" + f("etcd-server.key"),
			"--client-cert-auth", "--trusted-ca-file=" + f("ca.crt"),
			"--snapshot-count=10000",
		}},
		{name: "kube-apiserver", args: []string{
			"--advertise-address=" + ip, "--secure-port=" + fmt.Sprint(kubeAPIPort),
			"--etcd-servers=https://127.0.0.1:2379", "--etcd-cafile=" + f("ca.crt"),
			"--etcd-certfile=" + f("apiserver-etcd-client.crt"), "--etcd-keyfile=" + f("apiserver-etcd-client.key"),
			"--client-ca-file=" + f("ca.crt"),
			"--tls-cert-file=" + f("apiserver.crt"), "--tls-private-key-file=" + f("apiserver.key"),
			"--kubelet-client-certificate=" + f("apiserver-kubelet-client.crt"),
			"--kubelet-client-key=" + f("apiserver-kubelet-client.key"),
			"--kubelet-certificate-authority=" + f("ca.crt"),
			"--kubelet-preferred-address-types=InternalIP",
			"--service-account-key-file=" + f("sa.pub"), "--service-account-signing-key-file=" + f("sa.key"),
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-cluster-ip-range=10.96.0.0/16",
			"--authorization-mode=Node,RBAC", "--allow-privileged=true", "--profiling=false",
			// etcd answers slowly under emulation: its checks' 2 s default failed there.
			"--etcd-healthcheck-timeout=20s", "--etcd-readycheck-timeout=20s",
		}},
		{name: "kube-controller-manager", waitAPI: true, args: []string{
			"--kubeconfig=" + KubeDir + "/controller-manager.conf",
			"--authentication-kubeconfig=" + KubeDir + "/controller-manager.conf",
			"--authorization-kubeconfig=" + KubeDir + "/controller-manager.conf",
			"--bind-address=127.0.0.1", "--leader-elect=false", "--profiling=false",
			"--service-account-private-key-file=" + f("sa.key"), "--root-ca-file=" + f("ca.crt"),
			"--cluster-signing-cert-file=" + f("ca.crt"), "--cluster-signing-key-file=" + f("ca.key"),
			"--use-service-account-credentials=true",
			"--service-cluster-ip-range=10.96.0.0/16",
		}},
		{name: "kube-scheduler", waitAPI: true, args: []string{
			"--kubeconfig=" + KubeDir + "/scheduler.conf",
			"--authentication-kubeconfig=" + KubeDir + "/scheduler.conf",
			"--authorization-kubeconfig=" + KubeDir + "/scheduler.conf",
			"--bind-address=127.0.0.1", "--leader-elect=false", "--profiling=false",
		}},
		{name: "kubelet", waitAPI: true, args: []string{
			"--config=" + kubeRunDir + "/kubelet.yaml", "--kubeconfig=" + KubeDir + "/kubelet.conf",
			"--root-dir=" + KubeDir + "/kubelet", "--hostname-override=" + n.name, "--node-ip=" + ip,
		}},
		{name: "kube-proxy", waitAPI: true, args: []string{"--config=" + kubeRunDir + "/kube-proxy.yaml"}},
	}
}

// writeKubeFiles writes the kubeconfigs (kept on the data disk: the host fetches
// admin.conf) and the kubelet's and kube-proxy's configurations (made again each boot).
func writeKubeFiles(p *kubePKI, n kubeNode) error {
	server := fmt.Sprintf("https://127.0.0.1:%d", kubeAPIPort)
	for name, conf := range map[string]string{
		"admin": "admin.conf", "kubelet": "kubelet.conf", "controller-manager": "controller-manager.conf",
		"scheduler": "scheduler.conf", "kube-proxy": "kube-proxy.conf",
	} {
		b, err := p.kubeconfig(name, server)
		if err != nil {
			return err
		}
		if err := writeIfChanged(filepath.Join(KubeDir, conf), b, 0o600); err != nil {
			return err
		}
	}
	kubelet := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %[1]s}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://%[2]s
tlsCertFile: %[3]s
tlsPrivateKeyFile: %[4]s
failSwapOn: false
resolvConf: /etc/resolv.conf
clusterDomain: cluster.local
# A small data disk: evict only near full, and leave the engine's images alone until then.
evictionHard: {memory.available: 50Mi, nodefs.available: 2%%, imagefs.available: 2%%, nodefs.inodesFree: 2%%}
imageGCHighThresholdPercent: 95
imageGCLowThresholdPercent: 90
serializeImagePulls: false
healthzBindAddress: 127.0.0.1
`, p.file("ca.crt"), ContainerdSocket, p.file("kubelet-server.crt"), p.file("kubelet-server.key"))
	proxy := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: %s}
mode: iptables
clusterCIDR: 10.244.0.0/16
hostnameOverride: %s
# The guest's conntrack table is the kernel's default; kube-proxy leaves it as it is.
conntrack: {maxPerCore: 0}
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
`, KubeDir+"/kube-proxy.conf", n.name)
	if err := os.WriteFile(kubeRunDir+"/kubelet.yaml", []byte(kubelet), 0o600); err != nil {
		return err
	}
	return os.WriteFile(kubeRunDir+"/kube-proxy.yaml", []byte(proxy), 0o600)
}

// writeIfChanged replaces path with b unless it holds b already.
func writeIfChanged(path string, b []byte, mode os.FileMode) error {
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, b) {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// importPause imports the layer's pause image into containerd's Kubernetes namespace,
// once per layer: containerd keeps it on the data disk.
func (s *System) importPause(ctx context.Context) error {
	archive := KubeMount + "/images/pause.tar"
	digest, err := os.ReadFile(KubeMount + "/images/pause.digest")
	if err != nil {
		return err
	}
	marker := KubeDir + "/pause.imported"
	if cur, err := os.ReadFile(marker); err == nil && bytes.Equal(cur, digest) {
		return nil
	}
	if err := waitFile(ctx, ContainerdSocket); err != nil {
		return err
	}
	var err2 error
	for range 20 { // containerd's socket appears before its services are all up
		if err2 = s.run(KubeMount+"/bin/ctr", "--address", ContainerdSocket, "-n", "k8s.io", "images", "import",
			"--base-name", strings.Split(kubePauseImage, ":")[0], archive); err2 == nil {
			return os.WriteFile(marker, digest, 0o644)
		}
		time.Sleep(500 * time.Millisecond)
	}
	return err2
}

// supervise runs one of the cluster's processes, logging to kubeLogDir/name.log, and
// starts it again when it exits (etcd or the API server restarting, the kubelet exiting
// on a configuration it cannot use yet), waiting longer each time it ends quickly.
func (s *System) supervise(ctx context.Context, name string, args []string) {
	backoff := time.Second
	for {
		cmd := exec.Command(KubeMount+"/bin/"+name, args...)
		// Half as many collections: under emulation the collector was a large part of the
		// control plane's CPU, and the machine has the memory to spare.
		cmd.Env = append(os.Environ(), "GOGC=200")
		f, err := os.OpenFile(filepath.Join(kubeLogDir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err == nil {
			cmd.Stdout, cmd.Stderr = f, f
		}
		started := time.Now()
		ch, err := s.Reaper.Start(cmd)
		if f != nil {
			f.Close()
		}
		var status syscall.WaitStatus
		if err == nil {
			status = <-ch // Shutdown's signal to every process ends it
		}
		s.mu.Lock()
		stopping := s.stopping
		s.mu.Unlock()
		if stopping || ctx.Err() != nil {
			return
		}
		if err != nil {
			s.Log("kubernetes: start %s: %v", name, err)
		} else {
			s.Log("kubernetes: %s exited (%v); starting it again", name, status)
		}
		if time.Since(started) > time.Minute {
			backoff = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// waitAPIReady returns once the API server answers /readyz with 200.
func waitAPIReady(ctx context.Context, p *kubePKI) error {
	ca, err := os.ReadFile(p.file("ca.crt"))
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots}, TLSHandshakeTimeout: 30 * time.Second}}
	defer c.CloseIdleConnections()
	url := fmt.Sprintf("https://127.0.0.1:%d/readyz", kubeAPIPort)
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the API server: %w", ctx.Err())
		case <-time.After(2 * time.Second):
		}
	}
}

// waitTCP returns once addr accepts a connection.
func waitTCP(ctx context.Context, addr string) error {
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", addr, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// unmountUnder unmounts, deepest first, every mount whose target is under one of dirs:
// the kubelet's volumes and the containers' root filesystems would keep the data disk
// busy, and a lazily detached data disk needs journal recovery at the next boot.
func unmountUnder(dirs ...string) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	var targets []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		t := unescapeMount(f[1])
		for _, d := range dirs {
			if strings.HasPrefix(t, d+"/") {
				targets = append(targets, t)
				break
			}
		}
	}
	for i := len(targets) - 1; i >= 0; i-- {
		if err := unix.Unmount(targets[i], 0); err != nil && !errors.Is(err, unix.EINVAL) {
			unix.Unmount(targets[i], unix.MNT_DETACH)
		}
	}
}

// unescapeMount undoes /proc/self/mounts' octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var out strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			var v byte
			ok := true
			for _, c := range []byte(s[i+1 : i+4]) {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + c - '0'
			}
			if ok {
				out.WriteByte(v)
				i += 3
				continue
			}
		}
		out.WriteByte(s[i])
	}
	return out.String()
}
