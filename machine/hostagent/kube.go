package hostagent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/skiff-dev/skiff/forward"
	"github.com/skiff-dev/skiff/forward/hostports"
	"github.com/skiff-dev/skiff/forward/transport"
	"github.com/skiff-dev/skiff/forward/usernet"
	"github.com/skiff-dev/skiff/machine"
)

// Where the guest's cluster is (images/guestinit: KubeAdminConfig, kubeAPIPort).
const (
	guestKubeAdmin   = "/var/lib/skiff/kube/admin.conf"
	guestKubeAPI     = "127.0.0.1:6443"
	guestKubeAPIPort = 6443
	// defaultKubeAPIPort is the host port a machine's API server gets when it is free.
	defaultKubeAPIPort = 6443
)

// kubeOwnPorts are the cluster's own listeners in the guest. They are not mirrored on the
// host: the API server is published at the machine's API port (kube.json), and the
// kubelet's and kube-proxy's ports serve the cluster, not the user.
var kubeOwnPorts = map[forward.Listener]bool{
	{Proto: "tcp", Port: guestKubeAPIPort}: true,
	{Proto: "tcp", Port: 10250}:            true, // kubelet
	{Proto: "tcp", Port: 10256}:            true, // kube-proxy health
}

// kubeListeners leaves the cluster's own ports out of the guest's listeners.
func (a *Agent) kubeListeners(ls []forward.Listener) []forward.Listener {
	if !a.Spec.Kubernetes {
		return ls
	}
	out := make([]forward.Listener, 0, len(ls))
	for _, l := range ls {
		if !kubeOwnPorts[forward.Listener{Proto: l.Proto, Port: l.Port}] {
			out = append(out, l)
		}
	}
	return out
}

// startKube brings a machine's Kubernetes to the host, when it runs one: its API server
// on 127.0.0.1 at the machine's API port, the user's kubeconfig entries once it answers,
// and its services' ports.
func (a *Agent) startKube(ctx context.Context, guest transport.Dialer, ports *hostports.Manager) {
	if !a.Spec.Kubernetes {
		return
	}
	a.goAgent(ctx, "kubernetes", func(ctx context.Context) error { return a.runKube(ctx, guest, ports) })
}

func (a *Agent) runKube(ctx context.Context, guest transport.Dialer, ports *hostports.Manager) error {
	st, err := a.Dir.KubeState()
	if err != nil {
		return err
	}
	if st.APIPort == 0 || !portFree(st.APIPort) {
		// First start, or a host program took the port since: the kubeconfig entry is
		// written again below with the new one.
		old := st.APIPort
		st.APIPort = pickKubeAPIPort()
		if old != 0 {
			a.warn("kubernetes: host port %d is taken; the API server is at 127.0.0.1:%d now", old, st.APIPort)
		}
		if err := a.Dir.SaveKubeState(st); err != nil {
			return err
		}
	}
	apiFwd := hostports.Published{Proto: "tcp", HostIP: "127.0.0.1", HostPort: st.APIPort, Target: guestKubeAPI}
	ports.UpdateSource(ctx, kubeServicesSource, []hostports.Published{apiFwd})

	began := time.Now()
	admin, err := a.fetchKubeAdmin(ctx, guest)
	if err != nil {
		return err
	}
	creds, err := machine.ParseKubeCredentials(admin)
	if err != nil {
		return err
	}
	api, err := newKubeAPI("https://"+guestKubeAPI, creds, func(ctx context.Context) (net.Conn, error) {
		return guest.Dial(ctx, forward.PrefixTCP+guestKubeAPI)
	})
	if err != nil {
		return err
	}
	a.logf("kubernetes: admin.conf fetched from the guest after %s; waiting for the API server", time.Since(began).Round(100*time.Millisecond))
	if err := waitKubeReady(ctx, api, a.logf); err != nil {
		return err
	}
	a.logf("kubernetes: the API server answers (%s after the engine), on the host at 127.0.0.1:%d", time.Since(began).Round(100*time.Millisecond), st.APIPort)
	if err := a.mergeKubeconfig(st, admin); err != nil {
		a.warn("kubernetes: the kubeconfig: %v", err)
	}
	svc := &kubeServices{api: api, ports: ports, node: usernet.GuestIP, fixed: []hostports.Published{apiFwd}, logf: a.logf}
	return svc.run(ctx)
}

// pickKubeAPIPort is 6443 when the host has it free, else a free port the kernel picks.
func pickKubeAPIPort() int {
	if portFree(defaultKubeAPIPort) {
		return defaultKubeAPIPort
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return defaultKubeAPIPort
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// portFree says whether the host's loopback has port free for a listener.
func portFree(port int) bool {
	ln, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// mergeKubeconfig writes the machine's entries into the user's kubeconfig, and
// records where (removed from there by rm and set --kubernetes=false).
func (a *Agent) mergeKubeconfig(st *machine.KubeState, admin []byte) error {
	path, err := machine.KubeconfigPath()
	if err != nil {
		return err
	}
	name := machine.KubeName(a.Spec.Name)
	if st.Kubeconfig != "" && (st.Kubeconfig != path || st.Name != name) {
		// KUBECONFIG changed since the last start: the old entries go.
		if err := machine.RemoveKubeconfig(st.Kubeconfig, st.Name); err != nil {
			a.logf("kubernetes: remove the old kubeconfig entries from %s: %v", st.Kubeconfig, err)
		}
	}
	res, err := machine.MergeKubeconfig(machine.MergeKubeconfigOptions{Path: path, Name: name, Admin: admin,
		Server: "https://127.0.0.1:" + strconv.Itoa(st.APIPort)})
	if err != nil {
		return err
	}
	st.Kubeconfig, st.Name = path, name
	if err := a.Dir.SaveKubeState(st); err != nil {
		return err
	}
	how := "kubectl --context " + name
	if res.Current {
		how = "kubectl (the current context)"
	}
	a.logf("kubernetes: context %s in %s; use it with: %s", name, path, how)
	return nil
}

// fetchKubeAdmin reads the cluster's admin kubeconfig from the guest over the machine's
// ssh (host key pinned), once the guest has written it.
func (a *Agent) fetchKubeAdmin(ctx context.Context, guest transport.Dialer) ([]byte, error) {
	cfg, err := a.Dir.SSHClientConfig()
	if err != nil {
		return nil, err
	}
	var last string
	for {
		b, err := sshOutput(ctx, guest, a.Dir, cfg, "cat "+guestKubeAdmin)
		if err == nil && len(b) > 0 {
			return b, nil
		}
		if err != nil && err.Error() != last {
			last = err.Error()
			a.logf("kubernetes: waiting for %s in the guest: %v", guestKubeAdmin, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// sshOutput runs one command in the guest over its sshd and returns its output.
func sshOutput(ctx context.Context, guest transport.Dialer, d machine.Dir, cfg *ssh.ClientConfig, command string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := guest.Dial(ctx, forward.ServiceSSH)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	client, err := d.SSHClient(conn, cfg)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	out, err := sess.Output(command)
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		return nil, fmt.Errorf("%s: exit status %d", command, ee.ExitStatus())
	}
	return out, err
}

// waitKubeReady waits until the API server serves the admin (kubeAPI.ready), and says
// why not once a minute.
func waitKubeReady(ctx context.Context, api *kubeAPI, logf func(string, ...any)) error {
	var said time.Time
	for {
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := api.ready(c)
		cancel()
		if err == nil {
			return nil
		}
		if time.Since(said) > time.Minute && ctx.Err() == nil {
			said = time.Now()
			logf("kubernetes: the API server does not answer yet: %v", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}
