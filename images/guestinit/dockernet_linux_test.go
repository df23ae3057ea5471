package guestinit

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// netStore writes records laid out as libnetwork's store keeps them.
func netStore(t *testing.T, records map[string]string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "local-kv.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("libnetwork"))
		if err != nil {
			return err
		}
		for k, v := range records {
			val := binary.LittleEndian.AppendUint64(nil, 1)
			if err := b.Put([]byte(netKeyPrefix+k), append(val, v...)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func storedKeys(t *testing.T, path string) []string {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var keys []string
	db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("libnetwork")).ForEach(func(k, _ []byte) error {
			keys = append(keys, string(k[len(netKeyPrefix):]))
			return nil
		})
	})
	sort.Strings(keys)
	return keys
}

func TestForgetDefaultBridge(t *testing.T) {
	records := func() map[string]string {
		return map[string]string{
			"bridge/def/":          `{"BridgeName":"docker0","DefaultBridge":true}`,
			"network/def/":         `{"name":"bridge","networkType":"bridge"}`,
			"endpoint_count/def/":  `{"Count":0}`,
			"bridge/user/":         `{"BridgeName":"br-user","DefaultBridge":false}`,
			"network/user/":        `{"name":"mynet","networkType":"bridge"}`,
			"endpoint_count/user/": `{"Count":1}`,
			"endpoint/user/ep1/":   `{"name":"web"}`,
			"network/host/":        `{"name":"host","networkType":"host"}`,
		}
	}
	noLiveRestore := filepath.Join(t.TempDir(), "daemon.json")
	os.WriteFile(noLiveRestore, []byte(`{"features":{"buildkit":true}}`), 0o644)

	t.Run("forgets only the default bridge", func(t *testing.T) {
		db := netStore(t, records())
		forgot, err := ForgetDefaultBridge(db, noLiveRestore)
		if err != nil || !forgot {
			t.Fatalf("ForgetDefaultBridge = %v, %v; want true, nil", forgot, err)
		}
		want := []string{"bridge/user/", "endpoint/user/ep1/", "endpoint_count/user/", "network/host/", "network/user/"}
		if got := storedKeys(t, db); !slices.Equal(got, want) {
			t.Fatalf("left %v; want %v", got, want)
		}
	})
	t.Run("keeps a default bridge with endpoints", func(t *testing.T) {
		r := records()
		r["endpoint/def/ep2/"] = `{"name":"stale"}`
		db := netStore(t, r)
		before := storedKeys(t, db)
		if forgot, err := ForgetDefaultBridge(db, noLiveRestore); err != nil || forgot {
			t.Fatalf("ForgetDefaultBridge = %v, %v; want false, nil", forgot, err)
		}
		if got := storedKeys(t, db); !slices.Equal(got, before) {
			t.Fatalf("store changed: %v", got)
		}
	})
	t.Run("keeps everything under live-restore", func(t *testing.T) {
		db := netStore(t, records())
		live := filepath.Join(t.TempDir(), "daemon.json")
		os.WriteFile(live, []byte(`{"live-restore": true}`), 0o644)
		if forgot, err := ForgetDefaultBridge(db, live); err != nil || forgot {
			t.Fatalf("ForgetDefaultBridge = %v, %v; want false, nil", forgot, err)
		}
		if len(storedKeys(t, db)) != len(records()) {
			t.Fatal("store changed under live-restore")
		}
	})
	t.Run("no store yet", func(t *testing.T) {
		if forgot, err := ForgetDefaultBridge(filepath.Join(t.TempDir(), "none.db"), noLiveRestore); err != nil || forgot {
			t.Fatalf("ForgetDefaultBridge = %v, %v; want false, nil", forgot, err)
		}
	})
}
