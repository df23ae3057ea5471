package hostagent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/forward/hostports"
	"github.com/skiff-dev/skiff/machine"
)

// portRecorder is a portSink that keeps what it was last given.
type portRecorder struct {
	mu   sync.Mutex
	last []hostports.Published
	n    int
}

func (r *portRecorder) UpdateSource(_ context.Context, source string, ps []hostports.Published) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if source != kubeServicesSource {
		panic("source " + source)
	}
	r.last, r.n = slices.Clone(ps), r.n+1
}

func (r *portRecorder) get() []hostports.Published {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.last)
}

func testService(ns, name, typ string, ports ...[3]int) *kubeService {
	s := &kubeService{}
	s.Metadata.Namespace, s.Metadata.Name = ns, name
	s.Spec.Type, s.Spec.ClusterIP = typ, "10.96.0.10"
	for _, p := range ports {
		s.Spec.Ports = append(s.Spec.Ports, struct {
			Protocol string `json:"protocol"`
			Port     int    `json:"port"`
			NodePort int    `json:"nodePort"`
		}{Protocol: []string{"TCP", "UDP", "SCTP"}[p[2]], Port: p[0], NodePort: p[1]})
	}
	return s
}

// What the services ask of the host, without an API server.
func TestKubeServicesPublished(t *testing.T) {
	fixed := hostports.Published{Proto: "tcp", HostIP: "127.0.0.1", HostPort: 6443, Target: "127.0.0.1:6443"}
	other := "example.com/lb"
	classed := testService("a", "classed", "LoadBalancer", [3]int{9090, 30003, 0})
	classed.Spec.LoadBalancerClass = &other
	noNodePorts := testService("b", "direct", "LoadBalancer", [3]int{7070, 0, 0})
	c := &kubeServices{node: "192.168.127.2", fixed: []hostports.Published{fixed}, logf: t.Logf, svcs: map[string]*kubeService{}}
	for _, s := range []*kubeService{
		testService("a", "web", "NodePort", [3]int{80, 30080, 0}, [3]int{53, 30053, 1}, [3]int{99, 30099, 2}),
		testService("a", "lb", "LoadBalancer", [3]int{8080, 31000, 0}),
		testService("a", "plain", "ClusterIP", [3]int{5432, 0, 0}),
		testService("z", "late", "LoadBalancer", [3]int{8080, 31001, 0}), // 8080 is a/lb's
		classed, noNodePorts,
	} {
		c.svcs[s.key()] = s
	}
	got, conflicts := c.published()
	if len(conflicts) != 1 || !strings.Contains(conflicts[0], "z/late: host port tcp/8080 is a/lb's") {
		t.Errorf("conflicts: %q", conflicts)
	}
	want := []hostports.Published{fixed,
		{Proto: "tcp", HostIP: "127.0.0.1", HostPort: 31000, Target: "192.168.127.2:31000"},
		{Proto: "tcp", HostIP: "127.0.0.1", HostPort: 8080, Target: "192.168.127.2:31000"},
		{Proto: "tcp", HostIP: "127.0.0.1", HostPort: 30080, Target: "192.168.127.2:30080"},
		{Proto: "udp", HostIP: "127.0.0.1", HostPort: 30053, Target: "192.168.127.2:30053"},
		{Proto: "tcp", HostIP: "127.0.0.1", HostPort: 7070, Target: "10.96.0.10:7070"},
		{Proto: "tcp", HostIP: "127.0.0.1", HostPort: 31001, Target: "192.168.127.2:31001"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("published:\n got %+v\nwant %+v", got, want)
	}
	if classed.ours() || !noNodePorts.ours() {
		t.Fatal("a LoadBalancer with a class of its own is not Skiff's; one without is")
	}
}

// The controller against a real API server (and etcd) on this host: a NodePort and a
// LoadBalancer service get their host ports, the LoadBalancer's status says 127.0.0.1,
// one with a class of its own is left alone, and a deleted service's ports go.
func TestKubeServicesAgainstAPIServer(t *testing.T) {
	kube := os.Getenv("SKIFF_KUBE_BIN")
	etcd := os.Getenv("SKIFF_ETCD_BIN")
	if etcd == "" {
		etcd, _ = exec.LookPath("etcd")
	}
	if kube == "" || etcd == "" {
		t.Skip("needs a real API server: set SKIFF_KUBE_BIN to the multi-call kube binary (images/kube, run as `kube kube-apiserver`; the Kubernetes layer's bin/kube) " +
			"and SKIFF_ETCD_BIN to etcd (the layer's bin/etcd), or install etcd-server")
	}
	if testing.Short() {
		t.Skip("starts etcd and an API server")
	}
	api := startTestAPIServer(t, kube, etcd)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := &portRecorder{}
	fixed := hostports.Published{Proto: "tcp", HostIP: "127.0.0.1", HostPort: 16443, Target: "127.0.0.1:6443"}
	c := &kubeServices{api: api, ports: rec, node: "192.168.127.2", fixed: []hostports.Published{fixed}, logf: t.Logf}
	done := make(chan error, 1)
	go func() { done <- c.run(ctx) }()

	create := func(body string) {
		t.Helper()
		if err := api.do(ctx, http.MethodPost, "/api/v1/namespaces/default/services", "", []byte(body), nil); err != nil {
			t.Fatal(err)
		}
	}
	create(`{"metadata":{"name":"web"},"spec":{"type":"NodePort","selector":{"app":"web"},"ports":[{"port":80,"nodePort":30080}]}}`)
	create(`{"metadata":{"name":"lb"},"spec":{"type":"LoadBalancer","selector":{"app":"web"},"ports":[{"port":18080,"targetPort":80}]}}`)
	create(`{"metadata":{"name":"other"},"spec":{"type":"LoadBalancer","loadBalancerClass":"example.com/lb","selector":{"app":"web"},"ports":[{"port":19090}]}}`)

	var lb, other kubeService
	if err := api.do(ctx, http.MethodGet, "/api/v1/namespaces/default/services/lb", "", nil, &lb); err != nil {
		t.Fatal(err)
	}
	lbNode := lb.Spec.Ports[0].NodePort
	node := func(p int) string { return "192.168.127.2:" + strconv.Itoa(p) }
	want := []hostports.Published{fixed,
		{Proto: "tcp", HostIP: "127.0.0.1", HostPort: lbNode, Target: node(lbNode)},
		{Proto: "tcp", HostIP: "127.0.0.1", HostPort: 18080, Target: node(lbNode)},
		{Proto: "tcp", HostIP: "127.0.0.1", HostPort: 30080, Target: node(30080)},
	}
	waitFor(t, "the services' host ports", func() bool { return slices.Equal(rec.get(), want) }, func() string { return fmt.Sprint(rec.get()) })
	waitFor(t, "the LoadBalancer's status", func() bool {
		if err := api.do(ctx, http.MethodGet, "/api/v1/namespaces/default/services/lb", "", nil, &lb); err != nil {
			t.Fatal(err)
		}
		return hasHostIngress(lb.Status.LoadBalancer.Ingress)
	}, func() string { return fmt.Sprintf("%+v", lb.Status) })
	if err := api.do(ctx, http.MethodGet, "/api/v1/namespaces/default/services/other", "", nil, &other); err != nil {
		t.Fatal(err)
	}
	if len(other.Status.LoadBalancer.Ingress) != 0 {
		t.Errorf("a service of another class got an address: %+v", other.Status)
	}

	if err := api.do(ctx, http.MethodDelete, "/api/v1/namespaces/default/services/web", "", nil, nil); err != nil {
		t.Fatal(err)
	}
	want = slices.DeleteFunc(want, func(p hostports.Published) bool { return p.HostPort == 30080 })
	waitFor(t, "the deleted service's port to go", func() bool { return slices.Equal(rec.get(), want) }, func() string { return fmt.Sprint(rec.get()) })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, ok func() bool, state func() string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, state())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startTestAPIServer runs etcd and kube-apiserver on loopback ports, with a CA, a serving
// certificate for 127.0.0.1 and an admin client certificate (system:masters) made here.
func startTestAPIServer(t *testing.T, kube, etcd string) *kubeAPI {
	t.Helper()
	dir := t.TempDir()
	ca, caKey := testCert(t, nil, nil, pkix.Name{CommonName: "skiff-test-ca"}, true)
	srv, srvKey := testCert(t, ca, caKey, pkix.Name{CommonName: "kube-apiserver"}, false)
	adm, admKey := testCert(t, ca, caKey, pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}}, false)
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyDER := func(k *ecdsa.PrivateKey) []byte {
		b, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	etcdPort, peerPort, apiPort := freePort(t), freePort(t), freePort(t)
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	run := func(name string, args ...string) {
		cmd := exec.Command(name, args...)
		log, err := os.Create(filepath.Join(dir, filepath.Base(args[0])+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
			log.Close()
			if t.Failed() {
				b, _ := os.ReadFile(log.Name())
				if len(b) > 4000 {
					b = b[len(b)-4000:]
				}
				t.Logf("%s's log ends:\n%s", args[0], b)
			}
		})
	}
	run(etcd, "--name=test", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL, "--initial-cluster=test="+peerURL)
	run(kube, "kube-apiserver", "--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(apiPort), "--advertise-address=10.0.0.1",
		"--endpoint-reconciler-type=none", "--cert-dir="+filepath.Join(dir, "certs"),
		"--client-ca-file="+write("ca.crt", "CERTIFICATE", ca.Raw),
		"--tls-cert-file="+write("apiserver.crt", "CERTIFICATE", srv.Raw),
		"--tls-private-key-file="+write("apiserver.key", "PRIVATE KEY", keyDER(srvKey)),
		"--service-account-key-file="+write("sa.pub", "PUBLIC KEY", saPub),
		"--service-account-signing-key-file="+write("sa.key", "PRIVATE KEY", keyDER(saKey)),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range=10.96.0.0/16", "--authorization-mode=RBAC", "--profiling=false")
	creds := &machine.KubeCredentials{
		CA:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}),
		Cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: adm.Raw}),
		Key:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER(admKey)}),
	}
	addr := "127.0.0.1:" + strconv.Itoa(apiPort)
	api, err := newKubeAPI("https://"+addr, creds, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := waitKubeReady(ctx, api, t.Logf); err != nil {
		t.Fatalf("the API server did not become ready: %v", err)
	}
	// The default namespace is made by the server itself, a moment after it is ready.
	waitFor(t, "the default namespace", func() bool {
		return api.do(ctx, http.MethodGet, "/api/v1/namespaces/default", "", nil, &json.RawMessage{}) == nil
	}, func() string { return "" })
	return api
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// testCert makes a certificate signed by parent (self-signed when parent is nil), valid
// for 127.0.0.1 and localhost, for servers and clients.
func testCert(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, subject pkix.Name, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: subject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.ExtKeyUsage = nil
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func TestPickKubeAPIPort(t *testing.T) {
	p := pickKubeAPIPort()
	if !portFree(p) {
		t.Fatalf("picked port %d is not free", p)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if portFree(p) {
		t.Fatalf("port %d held here reads as free", p)
	}
	if q := pickKubeAPIPort(); q == p || q == 0 {
		t.Fatalf("picked %d again (held)", q)
	}
}
