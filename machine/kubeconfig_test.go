package machine

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/skiff-dev/skiff/vmm"
)

const testAdminConf = `apiVersion: v1
kind: Config
clusters:
- name: kubernetes
  cluster:
    certificate-authority-data: Q0E=
    server: https://127.0.0.1:6443
contexts:
- name: admin@kubernetes
  context: {cluster: kubernetes, user: admin}
current-context: admin@kubernetes
users:
- name: admin
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
`

const testUserConf = `apiVersion: v1
kind: Config
clusters:
- name: work
  cluster:
    server: https://work.example:443
    insecure-skip-tls-verify: true
contexts:
- name: work
  context: {cluster: work, user: me, namespace: team}
current-context: work
preferences:
  colors: true
users:
- name: me
  user:
    exec: {command: login-helper, apiVersion: client.authentication.k8s.io/v1}
`

func TestKubeconfigMergeAndRemove(t *testing.T) {
	p := filepath.Join(t.TempDir(), "kube", "config")
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(testUserConf), 0o644); err != nil {
		t.Fatal(err)
	}
	o := MergeKubeconfigOptions{Path: p, Name: "skiff", Admin: []byte(testAdminConf), Server: "https://127.0.0.1:41234"}
	res, err := MergeKubeconfig(o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Current {
		t.Error("the user's current context was replaced")
	}
	// Twice: the entries are replaced, not repeated.
	o.Server = "https://127.0.0.1:41235"
	if _, err := MergeKubeconfig(o); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("kubeconfig mode: %v %v", st.Mode(), err)
	}
	k := readTestKubeconfig(t, p)
	if len(k.Clusters) != 2 || len(k.Users) != 2 || len(k.Contexts) != 2 || k.CurrentContext != "work" {
		t.Fatalf("merged: %+v", k)
	}
	c := k.Clusters[1].Rest["cluster"].(map[string]any)
	if k.Clusters[1].Name != "skiff" || c["server"] != "https://127.0.0.1:41235" || c["certificate-authority-data"] != "Q0E=" {
		t.Errorf("cluster: %+v", k.Clusters[1])
	}
	if u := k.Users[1].Rest["user"].(map[string]any); u["client-key-data"] != "S0VZ" {
		t.Errorf("user: %+v", k.Users[1])
	}
	if ctx := k.Contexts[1].Rest["context"].(map[string]any); ctx["cluster"] != "skiff" || ctx["user"] != "skiff" {
		t.Errorf("context: %+v", k.Contexts[1])
	}
	// The user's own entries keep every field.
	if ctx := k.Contexts[0].Rest["context"].(map[string]any); ctx["namespace"] != "team" {
		t.Errorf("user's context lost its namespace: %+v", k.Contexts[0])
	}
	if u := k.Users[0].Rest["user"].(map[string]any); u["exec"] == nil {
		t.Errorf("user's exec plugin lost: %+v", k.Users[0])
	}
	if k.Rest["preferences"] == nil {
		t.Errorf("preferences lost: %+v", k.Rest)
	}

	if err := RemoveKubeconfig(p, "skiff"); err != nil {
		t.Fatal(err)
	}
	k = readTestKubeconfig(t, p)
	if len(k.Clusters) != 1 || len(k.Users) != 1 || len(k.Contexts) != 1 || k.CurrentContext != "work" || k.Clusters[0].Name != "work" {
		t.Fatalf("after remove: %+v", k)
	}
}

func TestKubeconfigNewFileAndCurrent(t *testing.T) {
	p := filepath.Join(t.TempDir(), ".kube", "config")
	res, err := MergeKubeconfig(MergeKubeconfigOptions{Path: p, Name: "skiff-b", Admin: []byte(testAdminConf), Server: "https://127.0.0.1:6443"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Current || readTestKubeconfig(t, p).CurrentContext != "skiff-b" {
		t.Fatal("an empty current context was not set")
	}
	if res, err := MergeKubeconfig(MergeKubeconfigOptions{Path: p, Name: "skiff-b", Admin: []byte(testAdminConf), Server: "https://127.0.0.1:6443"}); err != nil || !res.Current {
		t.Fatalf("merged again: current %v, %v", res.Current, err)
	}
	if err := RemoveKubeconfig(p, "skiff-b"); err != nil {
		t.Fatal(err)
	}
	k := readTestKubeconfig(t, p)
	if k.CurrentContext != "" || len(k.Contexts) != 0 {
		t.Fatalf("after remove: %+v", k)
	}
	if err := RemoveKubeconfig(filepath.Join(t.TempDir(), "none"), "skiff"); err != nil {
		t.Fatalf("removing from a missing file: %v", err)
	}
}

func TestKubeconfigRefusesGuestPaths(t *testing.T) {
	admin := strings.Replace(testAdminConf, "client-key-data: S0VZ", "client-key: /var/lib/skiff/kube/admin.key", 1)
	_, err := MergeKubeconfig(MergeKubeconfigOptions{Path: filepath.Join(t.TempDir(), "c"), Name: "skiff", Admin: []byte(admin), Server: "https://127.0.0.1:1"})
	if err == nil || !strings.Contains(err.Error(), "client-key-data") {
		t.Fatalf("got %v", err)
	}
}

func TestKubeconfigPath(t *testing.T) {
	t.Setenv("KUBECONFIG", string(filepath.ListSeparator)+"/a/first"+string(filepath.ListSeparator)+"/b/second")
	if p, err := KubeconfigPath(); err != nil || p != "/a/first" {
		t.Fatalf("got %q %v", p, err)
	}
	if KubeName(DefaultName) != "skiff" || KubeName("dev") != "skiff-dev" {
		t.Fatal("KubeName")
	}
}

func readTestKubeconfig(t *testing.T, p string) *kubeconfig {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var k kubeconfig
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	return &k
}

func TestParseKubeCredentials(t *testing.T) {
	c, err := ParseKubeCredentials([]byte(testAdminConf))
	if err != nil {
		t.Fatal(err)
	}
	if string(c.CA) != "CA" || string(c.Cert) != "CERT" || string(c.Key) != "KEY" {
		t.Fatalf("got %q %q %q", c.CA, c.Cert, c.Key)
	}
	if _, err := ParseKubeCredentials([]byte(strings.Replace(testAdminConf, "client-key-data: S0VZ", "", 1))); err == nil {
		t.Fatal("a kubeconfig without a key was taken")
	}
}

// set --kubernetes=false and rm take the machine's entries out of the kubeconfig they
// were written to, whatever KUBECONFIG says now.
func TestSetAndRemoveDropKubeconfigEntries(t *testing.T) {
	h := Home{Root: t.TempDir()}
	m := &Manager{Home: h, Backend: func(string) (vmm.Backend, error) { return nil, nil }}
	ctx := context.Background()
	kc := filepath.Join(t.TempDir(), "config")
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "elsewhere"))
	// rm also removes the machine's client connections: the test's, not the user's.
	t.Setenv("HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	for _, n := range []string{DefaultName, "dev"} {
		s := &Spec{Name: n, Backend: "qemu", CPUs: 1, MemoryMiB: 2048, DiskGiB: 2, Engine: EngineDocker, Kubernetes: true}
		if err := h.Create(s); err != nil {
			t.Fatal(err)
		}
		if _, err := MergeKubeconfig(MergeKubeconfigOptions{Path: kc, Name: KubeName(n), Admin: []byte(testAdminConf), Server: "https://127.0.0.1:6443"}); err != nil {
			t.Fatal(err)
		}
		if err := h.Dir(n).SaveKubeState(&KubeState{APIPort: 6443, Kubeconfig: kc, Name: KubeName(n)}); err != nil {
			t.Fatal(err)
		}
	}
	off := false
	res, err := m.Set(ctx, "dev", Changes{Kubernetes: &off})
	if err != nil || res.Spec.Kubernetes {
		t.Fatalf("set --kubernetes=false: %+v %v", res, err)
	}
	k := readTestKubeconfig(t, kc)
	if len(k.Contexts) != 1 || k.Contexts[0].Name != "skiff" {
		t.Fatalf("after set: %+v", k.Contexts)
	}
	if st, _ := h.Dir("dev").KubeState(); st.Kubeconfig != "" || st.APIPort != 6443 {
		t.Fatalf("kube state after set: %+v", st)
	}
	var notes []string
	if err := m.Remove(ctx, DefaultName, RmOptions{Note: func(s string) { notes = append(notes, s) }}); err != nil {
		t.Fatal(err)
	}
	if k := readTestKubeconfig(t, kc); len(k.Contexts)+len(k.Clusters)+len(k.Users) != 0 || k.CurrentContext != "" {
		t.Fatalf("after rm: %+v", k)
	}
	if !slices.ContainsFunc(notes, func(s string) bool { return strings.Contains(s, `"skiff" is removed from `+kc) }) {
		t.Fatalf("rm's notes: %q", notes)
	}
}
