package fake

import (
	"fmt"
	"time"

	"github.com/skiff-dev/skiff/gui/engine"
	"github.com/skiff-dev/skiff/machine"
	"github.com/skiff-dev/skiff/machine/agentapi"
)

// Demo fills src with a believable world: a running machine with containers and
// published ports, and a stopped one. It backs `skiff-tray --demo` and layout tests.
func Demo(src *Source) error {
	m, err := src.Add(machine.Spec{Name: "default", CPUs: 4, MemoryMiB: 4096, DiskGiB: 64, Engine: "docker"}, agentapi.PhaseRunning)
	if err != nil {
		return err
	}
	if _, err := src.Add(machine.Spec{Name: "podman-lab", CPUs: 2, MemoryMiB: 2048, DiskGiB: 20, Engine: "docker"}, ""); err != nil {
		return err
	}
	m.Agent.SetForwards([]agentapi.Forward{
		{Proto: "tcp", HostAddr: "127.0.0.1:8080", GuestAddr: "0.0.0.0:8080"},
		{Proto: "tcp", HostAddr: "127.0.0.1:5432", GuestAddr: "0.0.0.0:5432"},
		{Proto: "tcp", HostAddr: "127.0.0.1:3000", GuestAddr: "0.0.0.0:3000"},
	})
	now := time.Now()
	e := m.Engine
	for _, c := range []engine.Container{
		{ID: "c0ffee000001", Names: []string{"/web-frontend"}, Image: "skiff-test/busybox", State: "running",
			Status: "Up 12 minutes", Created: now.Add(-12 * time.Minute).Unix(),
			Ports: []engine.Port{{IP: "0.0.0.0", PrivatePort: 80, PublicPort: 8080, Type: "tcp"}, {IP: "::", PrivatePort: 80, PublicPort: 8080, Type: "tcp"}}},
		{ID: "c0ffee000002", Names: []string{"/postgres-main"}, Image: "postgres:16-alpine", State: "running",
			Status: "Up 2 hours (healthy)", Created: now.Add(-2 * time.Hour).Unix(),
			Ports: []engine.Port{{IP: "0.0.0.0", PrivatePort: 5432, PublicPort: 5432, Type: "tcp"}}},
		{ID: "c0ffee000003", Names: []string{"/grafana"}, Image: "grafana/grafana-oss:11.2.0", State: "running",
			Status: "Up 40 seconds", Created: now.Add(-40 * time.Second).Unix(),
			Ports: []engine.Port{{IP: "0.0.0.0", PrivatePort: 3000, PublicPort: 3000, Type: "tcp"}, {PrivatePort: 9090, Type: "tcp"}}},
		{ID: "c0ffee000004", Names: []string{"/migrate-once"}, Image: "example.com/team/migrations:2024-09-01", State: "exited",
			Status: "Exited (0) 3 minutes ago", Created: now.Add(-5 * time.Minute).Unix()},
	} {
		e.AddContainer(c)
	}
	for i, im := range []engine.Image{
		{ID: "sha256:1a2b3c4d5e6f", RepoTags: []string{"skiff-test/busybox:latest"}, Size: 4_260_000, Containers: 1},
		{ID: "sha256:2b3c4d5e6f7a", RepoTags: []string{"postgres:16-alpine"}, Size: 275_000_000, Containers: 1},
		{ID: "sha256:3c4d5e6f7a8b", RepoTags: []string{"grafana/grafana-oss:11.2.0"}, Size: 478_000_000, Containers: 1},
		{ID: "sha256:4d5e6f7a8b9c", RepoTags: []string{"<none>:<none>"}, Size: 88_000_000},
	} {
		im.Created = now.Add(-time.Duration(i+1) * 24 * time.Hour).Unix()
		e.AddImage(im)
	}
	for i := 1; i <= 30; i++ {
		e.Log("c0ffee000001", "stdout", fmt.Sprintf("10.0.2.2 - - [%s] \"GET /asset/%d HTTP/1.1\" 200 %d", now.Add(time.Duration(i)*time.Second).Format("02/Jan/2006:15:04:05"), i, 512+i))
	}
	e.Log("c0ffee000001", "stderr", "httpd: warning: no index.html, serving directory listing")
	return nil
}
