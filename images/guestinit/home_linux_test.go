package guestinit

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRehome(t *testing.T) {
	passwd := "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
	for _, c := range []struct {
		shares []string
		want   string
	}{
		{[]string{"/root"}, "root:x:0:0:root:/new:/bin/bash\n"},
		{[]string{"/mnt/x", "/"}, "root:x:0:0:root:/new:/bin/bash\n"},
		{[]string{"/home/alice", "/rootfs", "/root/sub"}, "root:x:0:0:root:/root:/bin/bash\n"},
		{nil, "root:x:0:0:root:/root:/bin/bash\n"},
	} {
		got, moved := rehome([]byte(passwd), c.shares, "/new")
		want := c.want + "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
		if string(got) != want || moved != (c.want != "root:x:0:0:root:/root:/bin/bash\n") {
			t.Errorf("shares %v: got %q (moved %v), want %q", c.shares, got, moved, want)
		}
	}
}

func TestSeparateRootHomeLeavesAnUncoveredHome(t *testing.T) {
	p := filepath.Join(t.TempDir(), "passwd")
	os.WriteFile(p, []byte("root:x:0:0:root:/root:/bin/bash\n"), 0o644)
	if err := separateRootHome(p, []string{"/home/alice"}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "root:x:0:0:root:/root:/bin/bash\n" {
		t.Fatalf("passwd changed: %q", b)
	}
}
