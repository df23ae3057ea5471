package guestinit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// DockerNetworkDB is the engine's network store.
const DockerNetworkDB = "/var/lib/docker/network/files/local-kv.db"

const netKeyPrefix = "docker/network/v1.0/"

// ForgetDefaultBridge removes the default bridge network from the engine's network store
// before dockerd starts. dockerd deletes and recreates that network on every start unless
// live-restore keeps containers running through it; with the record still there it first
// restores the network (the bridge and ~20 iptables commands), then tears it down (~20
// more), then builds it again: over a second of a boot under emulation. User networks are
// left alone, and so is a default bridge with endpoints still recorded (a machine that was
// powered off with containers attached), which dockerd's own cleanup handles.
func ForgetDefaultBridge(db, daemonJSON string) (bool, error) {
	if b, err := os.ReadFile(daemonJSON); err == nil {
		var cfg struct {
			LiveRestore bool `json:"live-restore"`
		}
		if json.Unmarshal(b, &cfg) != nil || cfg.LiveRestore {
			return false, nil
		}
	}
	if _, err := os.Stat(db); err != nil {
		return false, nil // first boot: nothing stored yet
	}
	d, err := bolt.Open(db, 0o644, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return false, fmt.Errorf("open %s: %w", db, err)
	}
	defer d.Close()
	// dockerd opens the store right after and reads it through the same page cache; a
	// crash before writeback only brings back the slow path. A sync here was a disk flush
	// on the boot's critical path.
	d.NoSync = true
	forgot := false
	err = d.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("libnetwork"))
		if b == nil {
			return nil
		}
		id := defaultBridgeID(b)
		if id == "" {
			return nil
		}
		var net struct{ Name string }
		if v := b.Get([]byte(netKeyPrefix + "network/" + id + "/")); v == nil || json.Unmarshal(storedValue(v), &net) != nil || net.Name != "bridge" {
			return nil
		}
		endpoints := []byte(netKeyPrefix + "endpoint/" + id + "/")
		if k, _ := b.Cursor().Seek(endpoints); bytes.HasPrefix(k, endpoints) {
			return nil
		}
		for _, kind := range []string{"bridge", "network", "endpoint_count"} {
			if err := b.Delete([]byte(netKeyPrefix + kind + "/" + id + "/")); err != nil {
				return err
			}
		}
		forgot = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("%s: %w", db, err)
	}
	return forgot, nil
}

// defaultBridgeID finds the bridge driver's record marked as the default bridge.
func defaultBridgeID(b *bolt.Bucket) string {
	prefix := []byte(netKeyPrefix + "bridge/")
	c := b.Cursor()
	for k, v := c.Seek(prefix); bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var cfg struct{ DefaultBridge bool }
		if json.Unmarshal(storedValue(v), &cfg) == nil && cfg.DefaultBridge {
			return strings.TrimSuffix(strings.TrimPrefix(string(k), string(prefix)), "/")
		}
	}
	return ""
}

// storedValue drops the 8-byte index libnetwork's store writes ahead of each JSON value.
func storedValue(v []byte) []byte {
	if len(v) < 8 {
		return nil
	}
	return v[8:]
}
