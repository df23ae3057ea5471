package guestinit

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: not PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestKubePKI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	now := time.Now()
	ip := net.IPv4(192, 168, 127, 2)
	p, err := ensureKubePKI(dir, kubeCerts("m1", ip), now)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, p.file("ca.crt")))
	api := readCert(t, p.file("apiserver.crt"))
	for _, host := range []string{"127.0.0.1", "localhost", "10.96.0.1", "kubernetes.default.svc.cluster.local", "192.168.127.2"} {
		if _, err := api.Verify(x509.VerifyOptions{Roots: roots, DNSName: host, CurrentTime: now}); err != nil {
			t.Errorf("apiserver certificate for %s: %v", host, err)
		}
	}
	if _, err := api.Verify(x509.VerifyOptions{Roots: roots, DNSName: "10.0.0.9", CurrentTime: now}); err == nil {
		t.Error("apiserver certificate verifies for an address it was not issued for")
	}
	kubelet := readCert(t, p.file("kubelet.crt"))
	if kubelet.Subject.CommonName != "system:node:m1" || len(kubelet.Subject.Organization) != 1 || kubelet.Subject.Organization[0] != "system:nodes" {
		t.Errorf("kubelet client certificate subject %v", kubelet.Subject)
	}
	if _, err := kubelet.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: now}); err != nil {
		t.Errorf("kubelet client certificate: %v", err)
	}
	if st, _ := os.Stat(p.file("ca.key")); st.Mode().Perm() != 0o600 {
		t.Errorf("ca.key mode %v", st.Mode())
	}

	// A second boot keeps everything; a new node address reissues what names it, under
	// the same CA.
	before, _ := os.ReadFile(p.file("admin.crt"))
	apiBefore, _ := os.ReadFile(p.file("apiserver.crt"))
	if _, err := ensureKubePKI(dir, kubeCerts("m1", ip), now); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(p.file("apiserver.crt")); string(after) != string(apiBefore) {
		t.Error("an unchanged node's apiserver certificate was issued again")
	}
	if _, err := ensureKubePKI(dir, kubeCerts("m1", net.IPv4(192, 168, 127, 3)), now); err != nil {
		t.Fatal(err)
	}
	api2 := readCert(t, p.file("apiserver.crt"))
	if _, err := api2.Verify(x509.VerifyOptions{Roots: roots, DNSName: "192.168.127.3", CurrentTime: now}); err != nil {
		t.Errorf("reissued apiserver certificate: %v", err)
	}
	if after, _ := os.ReadFile(p.file("admin.crt")); string(after) != string(before) {
		t.Error("the admin certificate changed with the node's address")
	}

	conf, err := p.kubeconfig("admin", "https://127.0.0.1:6443")
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := os.ReadFile(p.file("ca.crt"))
	for _, want := range []string{"server: https://127.0.0.1:6443", "certificate-authority-data: " + base64.StdEncoding.EncodeToString(ca), "current-context: skiff"} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("admin kubeconfig lacks %q", want)
		}
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{`/a/b`: "/a/b", `/a\040b`: "/a b", `/a\134`: `/a\`, `/a\9`: `/a\9`} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}
