package vmm

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"testing"
)

type coldBackend struct{}

func (coldBackend) Name() string                                      { return "cold" }
func (coldBackend) Check(ctx context.Context) error                   { return nil }
func (coldBackend) Start(ctx context.Context, cfg Config) (VM, error) { return &testVM{}, nil }
func (coldBackend) ShareType() string                                 { return "virtiofs" }

// warmBackend suspends its VMs unless they have a device that blocks it.
type warmBackend struct{ coldBackend }

func (warmBackend) CanSuspend(vm VM) error {
	v, err := Own[*testVM]("warm", vm)
	if err == nil && v.blocker {
		err = errors.New("a device blocks saving")
	}
	return err
}

func (warmBackend) StateKey(ctx context.Context, cfg Config) (string, error) { return "k", nil }
func (warmBackend) Restore(ctx context.Context, cfg Config, dir string) (VM, error) {
	return &testVM{}, nil
}
func (warmBackend) DiscardState(ctx context.Context, cfg Config) error { return nil }
func (warmBackend) DiskFiles(cfg Config) []string                      { return cfg.DiskPaths() }
func (warmBackend) Suspend(ctx context.Context, vm VM, dir string) error {
	_, err := Own[*testVM]("warm", vm)
	return err
}

type testVM struct{ blocker bool }

func (*testVM) Wait(ctx context.Context) error { return nil }
func (*testVM) Kill(ctx context.Context) error { return nil }

type dialVM struct{ testVM }

func (*dialVM) DialGuest(ctx context.Context, port uint32) (net.Conn, error) { return nil, nil }

func TestFeatures(t *testing.T) {
	for _, c := range []struct {
		name string
		b    Backend
		vm   VM
		want FeatureSet
	}{
		{"cold", coldBackend{}, nil, FeatureSet{Shares: "virtiofs"}},
		{"cold running", coldBackend{}, &dialVM{}, FeatureSet{Vsock: true, Shares: "virtiofs"}},
		{"warm", warmBackend{}, nil, FeatureSet{WarmStart: true, Shares: "virtiofs"}},
		{"warm running", warmBackend{}, &testVM{}, FeatureSet{WarmStart: true, Shares: "virtiofs"}},
		{"warm blocked", warmBackend{}, &testVM{blocker: true}, FeatureSet{NoWarmStart: "a device blocks saving", Shares: "virtiofs"}},
	} {
		if got := Features(c.b, c.vm); got != c.want {
			t.Errorf("%s: Features = %+v, want %+v", c.name, got, c.want)
		}
	}
	j, _ := json.Marshal(Features(warmBackend{}, &testVM{}))
	if string(j) != `{"warmStart":true,"vsock":false,"shares":"virtiofs"}` {
		t.Errorf("JSON: %s", j)
	}
}

func TestOwn(t *testing.T) {
	w := warmBackend{}
	if err := w.CanSuspend(&dialVM{}); !errors.Is(err, ErrForeignVM) || err.Error() != "warm: *vmm.dialVM: not a VM this backend started" {
		t.Fatalf("CanSuspend of another backend's VM: %v", err)
	}
	if err := w.Suspend(context.Background(), &testVM{}, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if got := w.DiskFiles(Config{Disks: []Disk{{Path: "/a"}, {Path: "/b"}}}); len(got) != 2 || got[0] != "/a" || got[1] != "/b" {
		t.Fatalf("DiskPaths = %v", got)
	}
}

var _ Warm = warmBackend{}
