package guestinit

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// kubeCert is one certificate of a machine's Kubernetes PKI, signed by its CA.
type kubeCert struct {
	name   string // file stem in the PKI directory
	cn     string
	orgs   []string
	server bool // TLS server (with SANs) rather than client
	dns    []string
	ips    []net.IP
}

// kubePKI is a machine's certificate authority and the certificates of its components.
// It is made in the guest at the first boot with Kubernetes and kept on the data disk:
// its keys never leave the machine except in the admin kubeconfig the host fetches.
type kubePKI struct {
	dir   string
	ca    *x509.Certificate
	caKey crypto.Signer
}

// kubeCerts are the certificates the components use, for a node named host at nodeIP.
func kubeCerts(host string, nodeIP net.IP) []kubeCert {
	loop := []net.IP{net.IPv4(127, 0, 0, 1), nodeIP}
	return []kubeCert{
		{name: "apiserver", cn: "kube-apiserver", server: true,
			dns: []string{"localhost", host, "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
			ips: append(loop, kubeAPIServiceIP)},
		{name: "apiserver-kubelet-client", cn: "kube-apiserver-kubelet-client", orgs: []string{"system:masters"}},
		{name: "apiserver-etcd-client", cn: "kube-apiserver-etcd-client"},
		{name: "etcd-server", cn: "etcd", server: true, dns: []string{"localhost"}, ips: loop},
		{name: "kubelet", cn: "system:node:" + host, orgs: []string{"system:nodes"}},
		{name: "kubelet-server", cn: host, server: true, dns: []string{host, "localhost"}, ips: loop},
		{name: "controller-manager", cn: "system:kube-controller-manager"},
		{name: "scheduler", cn: "system:kube-scheduler"},
		{name: "kube-proxy", cn: "system:kube-proxy"},
		{name: "admin", cn: "kubernetes-admin", orgs: []string{"system:masters"}},
	}
}

// kubeAPIServiceIP is the first address of the service range: kubernetes.default's.
var kubeAPIServiceIP = net.IPv4(10, 96, 0, 1)

// ensureKubePKI loads the PKI in dir, making what is missing: the CA on first boot, and a
// component's certificate when its file is absent or no longer matches certs (a new node
// address or name).
func ensureKubePKI(dir string, certs []kubeCert, now time.Time) (*kubePKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &kubePKI{dir: dir}
	ca, key, err := loadPair(dir, "ca")
	if errors.Is(err, os.ErrNotExist) {
		ca, key, err = p.newCA(now)
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes CA: %w", err)
	}
	p.ca, p.caKey = ca, key
	for _, c := range certs {
		if cur, _, err := loadPair(dir, c.name); err == nil && c.matches(cur, ca, now) {
			continue
		}
		if err := p.issue(c, now); err != nil {
			return nil, fmt.Errorf("kubernetes certificate %s: %w", c.name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "sa.key")); errors.Is(err, os.ErrNotExist) {
		if err := p.newServiceAccountKey(); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// matches says whether cur is c as it would be issued now by ca.
func (c kubeCert) matches(cur, ca *x509.Certificate, now time.Time) bool {
	if cur.CheckSignatureFrom(ca) != nil || now.After(cur.NotAfter.Add(-30*24*time.Hour)) || cur.Subject.CommonName != c.cn {
		return false
	}
	if len(cur.IPAddresses) != len(c.ips) || len(cur.DNSNames) != len(c.dns) {
		return false
	}
	for i, ip := range c.ips {
		if !cur.IPAddresses[i].Equal(ip) {
			return false
		}
	}
	for i, d := range c.dns {
		if cur.DNSNames[i] != d {
			return false
		}
	}
	return true
}

func (p *kubePKI) newCA(now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "skiff-kubernetes-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	if err := writePair(p.dir, "ca", der, key); err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	return ca, key, err
}

func (p *kubePKI) issue(c kubeCert, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: c.cn, Organization: c.orgs},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(2 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		DNSNames:     c.dns,
		IPAddresses:  c.ips,
	}
	if c.server {
		// etcd's and the kubelet's server certificates also serve as their clients'.
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, key.Public(), p.caKey)
	if err != nil {
		return err
	}
	return writePair(p.dir, c.name, der, key)
}

// newServiceAccountKey makes the key the API server signs service account tokens with.
func (p *kubePKI) newServiceAccountKey() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(p.dir, "sa.pub"), "PUBLIC KEY", pub, 0o644); err != nil {
		return err
	}
	return writePEM(filepath.Join(p.dir, "sa.key"), "PRIVATE KEY", der, 0o600)
}

// file is the path of a PKI file: name.crt or name.key.
func (p *kubePKI) file(name string) string { return filepath.Join(p.dir, name) }

// kubeconfig is a kubeconfig for the API server at server, authenticated as the
// certificate name, with the certificate and key inline so that the file stands alone
// (the host's copy of admin.conf).
func (p *kubePKI) kubeconfig(name, server string) ([]byte, error) {
	ca, err := os.ReadFile(p.file("ca.crt"))
	if err != nil {
		return nil, err
	}
	crt, err := os.ReadFile(p.file(name + ".crt"))
	if err != nil {
		return nil, err
	}
	key, err := os.ReadFile(p.file(name + ".key"))
	if err != nil {
		return nil, err
	}
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: skiff
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: skiff
  context:
    cluster: skiff
    user: %s
current-context: skiff
`, server, b64(ca), name, b64(crt), b64(key), name), nil
}

func loadPair(dir, name string) (*x509.Certificate, crypto.Signer, error) {
	cb, err := os.ReadFile(filepath.Join(dir, name+".crt"))
	if err != nil {
		return nil, nil, err
	}
	kb, err := os.ReadFile(filepath.Join(dir, name+".key"))
	if err != nil {
		return nil, nil, err
	}
	cblk, _ := pem.Decode(cb)
	kblk, _ := pem.Decode(kb)
	if cblk == nil || kblk == nil {
		return nil, nil, fmt.Errorf("%s: not PEM", name)
	}
	cert, err := x509.ParseCertificate(cblk.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParseECPrivateKey(kblk.Bytes)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func writePair(dir, name string, der []byte, key *ecdsa.PrivateKey) error {
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, name+".key"), "EC PRIVATE KEY", kder, 0o600); err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, name+".crt"), "CERTIFICATE", der, 0o644)
}

// writePEM replaces path whole, so that a boot cut short leaves the old file or the new.
func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}
