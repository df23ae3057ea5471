package guestinit

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/moby/moby/client"
)

// Images the machine's docker builds, pulls, loads or tags are given to Kubernetes: the
// kubelet sees only containerd's k8s.io namespace, and dockerd keeps its images in its
// own store (overlay2). syncEngineImages copies each tagged engine image into that
// namespace (docker save | ctr import, content the two stores then hold twice) and drops
// the ones the engine no longer has under that tag. Pods use them by the same name with
// imagePullPolicy IfNotPresent or Never (":latest" means Always, which would pull).

// engineImagesState records which engine image ID each synced reference had.
const engineImagesState = KubeDir + "/engine-images.json"

// imageSync is what a reconcile does: references to import (grouped by image ID) and to
// remove from containerd.
type imageSync struct {
	importRefs []string
	removeRefs []string
}

// planImageSync compares the engine's tagged images (reference -> image ID) with what was
// synced before.
func planImageSync(engine, synced map[string]string) imageSync {
	var p imageSync
	for ref, id := range engine {
		if synced[ref] != id {
			p.importRefs = append(p.importRefs, ref)
		}
	}
	for ref := range synced {
		if _, ok := engine[ref]; !ok {
			p.removeRefs = append(p.removeRefs, ref)
		}
	}
	slices.Sort(p.importRefs)
	slices.Sort(p.removeRefs)
	return p
}

// syncEngineImages reconciles once at start and again after each image event of the
// engine (debounced), until ctx ends.
func (s *System) syncEngineImages(ctx context.Context) {
	if err := waitFile(ctx, EngineSocket); err != nil {
		return
	}
	c, err := engineClient()
	if err != nil {
		s.Log("kubernetes image sync: engine client: %v", err)
		return
	}
	defer c.Close()
	kick := make(chan struct{}, 1)
	go func() {
		for ctx.Err() == nil {
			if err := watchImageEvents(ctx, c, kick); err != nil && ctx.Err() == nil {
				s.Log("kubernetes image sync: engine events: %v", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
			}
		}
	}()
	kick <- struct{}{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		}
		// A build tags, a pull tags and pulls: one reconcile for the burst.
		time.Sleep(500 * time.Millisecond)
		select {
		case <-kick:
		default:
		}
		if err := s.reconcileImages(ctx, c); err != nil {
			s.Log("kubernetes image sync: %v", err)
		}
	}
}

// engineClient is the engine's own Go client on the guest's engine socket.
func engineClient() (*client.Client, error) {
	return client.New(client.WithHost("unix://" + EngineSocket))
}

// watchImageEvents signals kick at each image event until the stream ends.
func watchImageEvents(ctx context.Context, c *client.Client, kick chan<- struct{}) error {
	ev := c.Events(ctx, client.EventsListOptions{Filters: make(client.Filters).Add("type", "image")})
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-ev.Err:
			return err
		case <-ev.Messages:
			select {
			case kick <- struct{}{}:
			default:
			}
		}
	}
}

// reconcileImages makes containerd's k8s.io namespace hold the engine's tagged images.
func (s *System) reconcileImages(ctx context.Context, c *client.Client) error {
	engine, err := engineImages(ctx, c)
	if err != nil {
		return err
	}
	synced := map[string]string{}
	if b, err := os.ReadFile(engineImagesState); err == nil {
		json.Unmarshal(b, &synced)
	}
	plan := planImageSync(engine, synced)
	for _, ref := range plan.importRefs {
		if err := s.importEngineImage(ctx, c, ref); err != nil {
			s.Log("kubernetes image sync: %s: %v", ref, err)
			continue
		}
		synced[ref] = engine[ref]
		s.Log("kubernetes image sync: %s is available to pods", ref)
	}
	for _, ref := range plan.removeRefs {
		if err := s.run(KubeMount+"/bin/ctr", "--address", ContainerdSocket, "-n", "k8s.io", "images", "rm", containerdRef(ref)); err != nil {
			s.Log("kubernetes image sync: remove %s: %v", ref, err)
		}
		delete(synced, ref)
	}
	if len(plan.importRefs)+len(plan.removeRefs) == 0 {
		return nil
	}
	b, _ := json.Marshal(synced)
	return writeIfChanged(engineImagesState, b, 0o600)
}

// engineImages lists the engine's tagged images: reference -> image ID.
func engineImages(ctx context.Context, c *client.Client) (map[string]string, error) {
	list, err := c.ImageList(ctx, client.ImageListOptions{})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, im := range list.Items {
		for _, t := range im.RepoTags {
			if t != "<none>:<none>" {
				out[t] = im.ID
			}
		}
	}
	return out, nil
}

// importEngineImage streams the engine's export of ref (docker save) into ctr import.
func (s *System) importEngineImage(ctx context.Context, c *client.Client, ref string) error {
	saved, err := c.ImageSave(ctx, []string{ref})
	if err != nil {
		return err
	}
	defer saved.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd := exec.Command(KubeMount+"/bin/ctr", "--address", ContainerdSocket, "-n", "k8s.io", "images", "import", "-")
	cmd.Stdin = pr
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(pw, saved)
		pw.Close()
		copied <- err
	}()
	ws, err := s.Reaper.Run(cmd)
	pr.Close()
	cerr := <-copied
	if err != nil {
		return err
	}
	if !ws.Exited() || ws.ExitStatus() != 0 {
		return fmt.Errorf("ctr import: exit %d: %s", ws.ExitStatus(), strings.TrimSpace(out.String()))
	}
	return cerr
}

// containerdRef is the engine's short reference as containerd names it ("app:1" is
// docker.io/library/app:1), which is also how the kubelet resolves a pod's image.
func containerdRef(ref string) string {
	if n, err := reference.ParseNormalizedNamed(ref); err == nil {
		return n.String()
	}
	return ref
}
