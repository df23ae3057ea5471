package machine

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/skiff-dev/skiff/machine/atomicfile"
)

// FileKube records where a machine's Kubernetes is reachable from the host and which
// kubeconfig holds its entries, so that rm and set --kubernetes=false remove them from
// the file they were written to, whatever KUBECONFIG says then.
const FileKube = "kube.json"

// KubeState is what FileKube holds.
type KubeState struct {
	// APIPort is the host port (on 127.0.0.1) of the machine's API server; it is kept
	// across starts so that the kubeconfig entry stays valid.
	APIPort int `json:"apiPort"`
	// Kubeconfig is the file the entries were merged into, and Name their name there.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	Name       string `json:"name,omitempty"`
}

// KubeState reads the machine's FileKube; a machine that never ran Kubernetes has none.
func (d Dir) KubeState() (*KubeState, error) {
	b, err := os.ReadFile(d.File(FileKube))
	if errors.Is(err, fs.ErrNotExist) {
		return &KubeState{}, nil
	}
	if err != nil {
		return nil, err
	}
	var s KubeState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s is corrupt: %w", d.File(FileKube), err)
	}
	return &s, nil
}

// SaveKubeState writes FileKube.
func (d Dir) SaveKubeState(s *KubeState) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(d.File(FileKube), append(b, '\n'), 0o600)
}

// KubeName is the name of a machine's cluster, user and context in the user's
// kubeconfig: "skiff" for the default machine, "skiff-NAME" for others.
func KubeName(machineName string) string {
	if machineName == DefaultName {
		return "skiff"
	}
	return "skiff-" + machineName
}

// KubeconfigPath is the kubeconfig Skiff writes to: the first file of $KUBECONFIG, as
// kubectl writes new entries there, else ~/.kube/config.
func KubeconfigPath() (string, error) {
	for _, p := range filepath.SplitList(os.Getenv("KUBECONFIG")) {
		if p != "" {
			return p, nil
		}
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("kubeconfig: %w", err)
	}
	return filepath.Join(home, ".kube", "config"), nil
}

// kubeconfig is a kubeconfig file with the three lists Skiff edits typed, and everything
// else kept as it was read (yaml's inline map), so a merge loses nothing but comments.
type kubeconfig struct {
	APIVersion     string         `yaml:"apiVersion,omitempty"`
	Kind           string         `yaml:"kind,omitempty"`
	Clusters       []namedEntry   `yaml:"clusters"`
	Contexts       []namedEntry   `yaml:"contexts"`
	Users          []namedEntry   `yaml:"users"`
	CurrentContext string         `yaml:"current-context"`
	Rest           map[string]any `yaml:",inline"`
}

// namedEntry is one item of a kubeconfig list: its name and the rest, untouched.
type namedEntry struct {
	Name string         `yaml:"name"`
	Rest map[string]any `yaml:",inline"`
}

func readKubeconfig(path string) (*kubeconfig, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &kubeconfig{APIVersion: "v1", Kind: "Config"}, nil
	}
	if err != nil {
		return nil, err
	}
	var k kubeconfig
	if err := yaml.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	return &k, nil
}

func writeKubeconfig(path string, k *kubeconfig) error {
	b, err := yaml.Marshal(k)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, b, 0o600)
}

// lockKubeconfig serialises Skiff's edits of one kubeconfig (two machines' agents may
// merge at once). The lock is a file of Skiff's own: kubectl's PATH.lock is created
// exclusively and removed by kubectl, and one left behind would block kubectl.
func lockKubeconfig(path string) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	l, err := TryLockFor(path+".skiff-lock", 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("lock kubeconfig %s: %w", path, err)
	}
	return l, nil
}

// MergeKubeconfigOptions say what MergeKubeconfig writes.
type MergeKubeconfigOptions struct {
	// Path is the kubeconfig to merge into; Name the cluster, user and context to write.
	Path, Name string
	// Admin is the cluster's own admin kubeconfig (its first cluster and user are taken,
	// certificates inline); Server replaces its server address.
	Admin  []byte
	Server string
}

// MergeKubeconfigResult says what the merge changed besides the entries.
type MergeKubeconfigResult struct {
	// Current: the context is the current one (it became so, there being none, or it
	// already was).
	Current bool
}

// MergeKubeconfig writes o.Name's cluster, user and context into the kubeconfig at
// o.Path (replacing older ones of that name), keeping every other entry, and makes the
// context current only when no context is.
func MergeKubeconfig(o MergeKubeconfigOptions) (MergeKubeconfigResult, error) {
	var res MergeKubeconfigResult
	cluster, user, err := inlineCredentials(o.Admin)
	if err != nil {
		return res, fmt.Errorf("the cluster's admin %w", err)
	}
	cluster["server"] = o.Server
	lock, err := lockKubeconfig(o.Path)
	if err != nil {
		return res, err
	}
	defer lock.Unlock()
	k, err := readKubeconfig(o.Path)
	if err != nil {
		return res, err
	}
	k.Clusters = putEntry(k.Clusters, namedEntry{Name: o.Name, Rest: map[string]any{"cluster": cluster}})
	k.Users = putEntry(k.Users, namedEntry{Name: o.Name, Rest: map[string]any{"user": user}})
	k.Contexts = putEntry(k.Contexts, namedEntry{Name: o.Name, Rest: map[string]any{"context": map[string]any{"cluster": o.Name, "user": o.Name}}})
	if k.CurrentContext == "" {
		k.CurrentContext = o.Name
	}
	res.Current = k.CurrentContext == o.Name
	return res, writeKubeconfig(o.Path, k)
}

// inlineSection is entry's section (cluster, user) when its certificates are inline: a
// path in the cluster's file names a file in the guest.
func inlineSection(e namedEntry, section string, pathKeys ...string) (map[string]any, error) {
	m, ok := e.Rest[section].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("kubeconfig: %s %q has no %s section", section, e.Name, section)
	}
	for _, k := range pathKeys {
		if _, ok := m[k]; ok {
			return nil, fmt.Errorf("kubeconfig: %s %q names a file (%s); Skiff needs %s-data", section, e.Name, k, k)
		}
	}
	return m, nil
}

func putEntry(list []namedEntry, e namedEntry) []namedEntry {
	if i := slices.IndexFunc(list, func(x namedEntry) bool { return x.Name == e.Name }); i >= 0 {
		list[i] = e
		return list
	}
	return append(list, e)
}

// RemoveKubeconfig removes name's cluster, user and context from the kubeconfig at
// path; the current context, if it was name, becomes none. A missing file or entry is
// not an error.
func RemoveKubeconfig(path, name string) error {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	lock, err := lockKubeconfig(path)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	k, err := readKubeconfig(path)
	if err != nil {
		return err
	}
	named := func(x namedEntry) bool { return x.Name == name }
	n := len(k.Clusters) + len(k.Users) + len(k.Contexts)
	k.Clusters = slices.DeleteFunc(k.Clusters, named)
	k.Users = slices.DeleteFunc(k.Users, named)
	k.Contexts = slices.DeleteFunc(k.Contexts, named)
	if n == len(k.Clusters)+len(k.Users)+len(k.Contexts) && k.CurrentContext != name {
		return nil
	}
	if k.CurrentContext == name {
		k.CurrentContext = ""
	}
	return writeKubeconfig(path, k)
}

// RemoveKube removes the machine's entries from the kubeconfig they were written to and
// forgets it (the API port is kept for a later start). It returns what it removed: the
// entries' name and file, empty when there were none.
func (d Dir) RemoveKube() (name, path string, err error) {
	st, err := d.KubeState()
	if err != nil || st.Kubeconfig == "" {
		return "", "", err
	}
	if err := RemoveKubeconfig(st.Kubeconfig, st.Name); err != nil {
		return "", "", err
	}
	name, path = st.Name, st.Kubeconfig
	st.Kubeconfig, st.Name = "", ""
	return name, path, d.SaveKubeState(st)
}

// KubeCredentials are what a client needs of a cluster's admin kubeconfig: the cluster's
// CA and the client's certificate and key, PEM.
type KubeCredentials struct {
	CA, Cert, Key []byte
}

// inlineCredentials are the first cluster and the first user of a kubeconfig whose
// certificates are inline.
func inlineCredentials(conf []byte) (cluster, user map[string]any, err error) {
	var k kubeconfig
	if err := yaml.Unmarshal(conf, &k); err != nil {
		return nil, nil, fmt.Errorf("kubeconfig: %w", err)
	}
	if len(k.Clusters) == 0 || len(k.Users) == 0 {
		return nil, nil, errors.New("kubeconfig: no cluster or no user")
	}
	if cluster, err = inlineSection(k.Clusters[0], "cluster", "certificate-authority"); err != nil {
		return nil, nil, err
	}
	if user, err = inlineSection(k.Users[0], "user", "client-certificate", "client-key"); err != nil {
		return nil, nil, err
	}
	return cluster, user, nil
}

// ParseKubeCredentials reads the first cluster's CA and the first user's certificate
// and key from a kubeconfig whose certificates are inline.
func ParseKubeCredentials(conf []byte) (*KubeCredentials, error) {
	cluster, user, err := inlineCredentials(conf)
	if err != nil {
		return nil, err
	}
	var c KubeCredentials
	for _, f := range []struct {
		m   map[string]any
		key string
		to  *[]byte
	}{{cluster, "certificate-authority-data", &c.CA}, {user, "client-certificate-data", &c.Cert}, {user, "client-key-data", &c.Key}} {
		s, _ := f.m[f.key].(string)
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) == 0 {
			return nil, fmt.Errorf("kubeconfig: %s is missing or not base64", f.key)
		}
		*f.to = b
	}
	return &c, nil
}
