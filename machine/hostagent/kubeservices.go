package hostagent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/skiff-dev/skiff/forward/hostports"
	"github.com/skiff-dev/skiff/machine"
)

// kubeAPI is a small client of a Kubernetes API server: the few calls the services
// controller makes, over whatever stream dial opens (the guest agent's, in a machine).
type kubeAPI struct {
	base string
	http *http.Client
}

// newKubeAPI is a client of the API server at base (https://127.0.0.1:6443, the name its
// certificate is checked against), authenticated with creds, its connections from dial.
func newKubeAPI(base string, creds *machine.KubeCredentials, dial func(context.Context) (net.Conn, error)) (*kubeAPI, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(creds.CA) {
		return nil, errors.New("kubernetes: the cluster's CA is not a PEM certificate")
	}
	cert, err := tls.X509KeyPair(creds.Cert, creds.Key)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: the admin's certificate: %w", err)
	}
	tr := &http.Transport{
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		TLSClientConfig:     &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 30 * time.Second,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     time.Minute,
	}
	return &kubeAPI{base: strings.TrimSuffix(base, "/"), http: &http.Client{Transport: tr}}, nil
}

// do sends one request; a body is JSON unless contentType says otherwise, and out, if
// not nil, receives the JSON answer.
func (k *kubeAPI) do(ctx context.Context, method, path, contentType string, body []byte, out any) error {
	resp, err := k.send(ctx, method, path, contentType, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// send returns the answer of a successful request (2xx), its body to read and close.
func (k *kubeAPI) send(ctx context.Context, method, path, contentType string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, k.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		if contentType == "" {
			contentType = "application/json"
		}
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		return nil, &kubeStatusError{Code: resp.StatusCode, Method: method, Path: path, Body: strings.TrimSpace(string(b))}
	}
	return resp, nil
}

// kubeStatusError is an answer of the API server that is not a success.
type kubeStatusError struct {
	Code         int
	Method, Path string
	Body         string
}

func (e *kubeStatusError) Error() string {
	return fmt.Sprintf("kubernetes: %s %s: %d %s", e.Method, e.Path, e.Code, e.Body)
}

// ready says whether the API server serves the admin: it reads the default namespace.
// Not /readyz: that stays failing while a post-start hook is still at work (RBAC's
// bootstrap roles take minutes under emulation), though the API already serves kubectl.
func (k *kubeAPI) ready(ctx context.Context) error {
	return k.do(ctx, http.MethodGet, "/api/v1/namespaces/default", "", nil, nil)
}

// The parts of a Service the controller reads.
type kubeService struct {
	Metadata struct {
		Name            string `json:"name"`
		Namespace       string `json:"namespace"`
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
	Spec struct {
		Type              string  `json:"type"`
		ClusterIP         string  `json:"clusterIP"`
		LoadBalancerClass *string `json:"loadBalancerClass"`
		Ports             []struct {
			Protocol string `json:"protocol"`
			Port     int    `json:"port"`
			NodePort int    `json:"nodePort"`
		} `json:"ports"`
	} `json:"spec"`
	Status struct {
		LoadBalancer struct {
			Ingress []kubeIngress `json:"ingress"`
		} `json:"loadBalancer"`
	} `json:"status"`
}

type kubeIngress struct {
	IP       string `json:"ip,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	IPMode   string `json:"ipMode,omitempty"`
}

func (s *kubeService) key() string { return s.Metadata.Namespace + "/" + s.Metadata.Name }

// ours: a LoadBalancer service Skiff serves (one that names a class has its own controller).
func (s *kubeService) ours() bool {
	return s.Spec.Type == "LoadBalancer" && s.Spec.LoadBalancerClass == nil
}

// hostIngress is what a LoadBalancer service Skiff serves shows as its address: the
// host's loopback, where its ports are. ipMode Proxy keeps kube-proxy from routing the
// address in the guest, where 127.0.0.1 is the guest's own.
var hostIngress = kubeIngress{IP: "127.0.0.1", Hostname: "localhost", IPMode: "Proxy"}

// portSink takes the host ports the controller wants (hostports.Manager).
type portSink interface {
	UpdateSource(ctx context.Context, source string, ps []hostports.Published)
}

// kubeServicesSource names the controller's ports in the port manager.
const kubeServicesSource = "kubernetes"

// kubeServices brings a cluster's services to the host: kube-proxy's NodePorts are
// iptables rules, not listeners, so the guest's socket tables never show them. Every
// NodePort (of a NodePort or LoadBalancer service) gets 127.0.0.1:nodePort on the host,
// and every LoadBalancer service 127.0.0.1:port, both to the node's nodePort, and its
// status says it is at 127.0.0.1 (localhost).
type kubeServices struct {
	api   *kubeAPI
	ports portSink
	// node is the guest address the node's ports are dialled at.
	node string
	// fixed are ports the source always holds (the API server's own).
	fixed []hostports.Published
	logf  func(string, ...any)

	svcs map[string]*kubeService
	last []hostports.Published
}

// run lists and watches the services until ctx ends.
func (c *kubeServices) run(ctx context.Context) error {
	for ctx.Err() == nil {
		err := c.follow(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			c.logf("kubernetes services: %v", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
	return nil
}

// follow lists the services, then follows their changes from that version until the
// watch ends (the server closes watches after a while; the caller lists again).
func (c *kubeServices) follow(ctx context.Context) error {
	var list struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
		Items []*kubeService `json:"items"`
	}
	if err := c.api.do(ctx, http.MethodGet, "/api/v1/services", "", nil, &list); err != nil {
		return err
	}
	c.svcs = map[string]*kubeService{}
	for _, s := range list.Items {
		c.svcs[s.key()] = s
	}
	c.sync(ctx)
	resp, err := c.api.send(ctx, http.MethodGet, "/api/v1/services?watch=true&allowWatchBookmarks=false&resourceVersion="+list.Metadata.ResourceVersion, "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	stop := context.AfterFunc(ctx, func() { resp.Body.Close() })
	defer stop()
	dec := json.NewDecoder(resp.Body)
	for {
		var ev struct {
			Type   string          `json:"type"`
			Object json.RawMessage `json:"object"`
		}
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("watch: %w", err)
		}
		if ev.Type == "ERROR" { // the version is too old (410): list again
			return nil
		}
		var s kubeService
		if err := json.Unmarshal(ev.Object, &s); err != nil {
			return fmt.Errorf("watch: %w", err)
		}
		switch ev.Type {
		case "ADDED", "MODIFIED":
			c.svcs[s.key()] = &s
		case "DELETED":
			delete(c.svcs, s.key())
		default:
			continue
		}
		c.sync(ctx)
	}
}

// sync gives the port manager the services' ports and sets the status of the
// LoadBalancer services that do not show the host's address yet.
func (c *kubeServices) sync(ctx context.Context) {
	ps, conflicts := c.published()
	if !slices.Equal(ps, c.last) {
		for _, m := range conflicts {
			c.logf("kubernetes services: %s", m)
		}
		c.ports.UpdateSource(ctx, kubeServicesSource, ps)
		c.last = ps
	}
	for _, k := range slices.Sorted(maps.Keys(c.svcs)) {
		s := c.svcs[k]
		if !s.ours() || hasHostIngress(s.Status.LoadBalancer.Ingress) {
			continue
		}
		if err := c.setIngress(ctx, s); err != nil {
			c.logf("kubernetes services: %s: %v", k, err)
		}
	}
}

func hasHostIngress(in []kubeIngress) bool {
	return len(in) == 1 && in[0].IP == hostIngress.IP && in[0].Hostname == hostIngress.Hostname
}

// setIngress records the host's address in a LoadBalancer service's status. The watch
// brings the change back, which then needs nothing more.
func (c *kubeServices) setIngress(ctx context.Context, s *kubeService) error {
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"loadBalancer": map[string]any{"ingress": []kubeIngress{hostIngress}}}})
	if err != nil {
		return err
	}
	path := "/api/v1/namespaces/" + s.Metadata.Namespace + "/services/" + s.Metadata.Name + "/status"
	if err := c.api.do(ctx, http.MethodPatch, path, "application/merge-patch+json", patch, nil); err != nil {
		return err
	}
	c.logf("kubernetes services: %s is at 127.0.0.1 (localhost)", s.key())
	return nil
}

// published are the host ports the services want, in a stable order: the fixed ones,
// then by service. Of two services naming one host port the first (by namespace and
// name) has it; conflicts says who did not get one.
func (c *kubeServices) published() (out []hostports.Published, conflicts []string) {
	out = slices.Clone(c.fixed)
	seen := map[string]string{}
	for _, p := range out {
		seen[p.Proto+"/"+strconv.Itoa(p.HostPort)] = "Skiff"
	}
	add := func(owner, proto string, port int, target string) {
		k := proto + "/" + strconv.Itoa(port)
		if prev, ok := seen[k]; ok {
			if prev != owner {
				conflicts = append(conflicts, fmt.Sprintf("%s: host port %s is %s's", owner, k, prev))
			}
			return
		}
		seen[k] = owner
		out = append(out, hostports.Published{Proto: proto, HostIP: "127.0.0.1", HostPort: port, Target: target})
	}
	for _, k := range slices.Sorted(maps.Keys(c.svcs)) {
		s := c.svcs[k]
		if s.Spec.Type != "NodePort" && !s.ours() {
			continue
		}
		for _, p := range s.Spec.Ports {
			proto := strings.ToLower(p.Protocol)
			if proto == "" {
				proto = "tcp"
			}
			if proto != "tcp" && proto != "udp" {
				continue // SCTP: the host ports carry TCP and UDP
			}
			var target string
			switch {
			case p.NodePort > 0:
				target = net.JoinHostPort(c.node, strconv.Itoa(p.NodePort))
				add(k, proto, p.NodePort, target)
			case s.Spec.ClusterIP != "" && s.Spec.ClusterIP != "None":
				// A LoadBalancer service without node ports (allocateLoadBalancerNodePorts
				// false) is reached at its cluster IP, which kube-proxy serves in the guest.
				target = net.JoinHostPort(s.Spec.ClusterIP, strconv.Itoa(p.Port))
			default:
				continue
			}
			if s.ours() {
				add(k, proto, p.Port, target)
			}
		}
	}
	return out, conflicts
}
