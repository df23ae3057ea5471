package share9p

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/hugelgupf/p9/linux"
	"github.com/hugelgupf/p9/p9"
)

// client connects a real 9P client to Serve over a socket pair.
func client(t *testing.T, opt Options) p9.File {
	t.Helper()
	a, b := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go Serve(ctx, a, opt)
	c, err := p9.NewClient(b)
	if err != nil {
		t.Fatal(err)
	}
	root, err := c.Attach("")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func TestReadWrite(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "hello"), []byte("from the host"), 0o644)
	root := client(t, Options{Root: dir})
	_, f, err := root.Walk([]string{"hello"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Open(p9.ReadOnly); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, _ := f.ReadAt(buf, 0)
	if string(buf[:n]) != "from the host" {
		t.Fatalf("read %q", buf[:n])
	}
	_, d, _ := root.Walk(nil)
	nf, _, _, err := d.Create("new", p9.WriteOnly, 0o644, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nf.WriteAt([]byte("from the guest"), 0); err != nil {
		t.Fatal(err)
	}
	nf.Close()
	if got, _ := os.ReadFile(filepath.Join(dir, "new")); string(got) != "from the guest" {
		t.Fatalf("host sees %q", got)
	}
}

func TestReadOnly(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644)
	root := client(t, Options{Root: dir, ReadOnly: true})
	_, f, err := root.Walk([]string{"f"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Open(p9.ReadWrite); !errors.Is(err, linux.EROFS) {
		t.Fatalf("open for write on a read-only share: %v", err)
	}
	_, d, _ := root.Walk(nil)
	if _, _, _, err := d.Create("g", p9.WriteOnly, 0o644, 0, 0); !errors.Is(err, linux.EROFS) {
		t.Fatalf("create on a read-only share: %v", err)
	}
	if err := d.UnlinkAt("f", 0); !errors.Is(err, linux.EROFS) {
		t.Fatalf("unlink on a read-only share: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "f")); err != nil {
		t.Fatal("the file was removed through a read-only share")
	}
}

func TestNoEscape(t *testing.T) {
	dir := t.TempDir()
	root := client(t, Options{Root: filepath.Join(dir)})
	if _, _, err := root.Walk([]string{".."}); err == nil {
		t.Fatal("walked above the share root")
	}
}

// The guest lists a big folder in many Treaddir calls, each continuing at the offset of
// the last entry it got; every name must come exactly once.
func TestReaddirLargeFolder(t *testing.T) {
	dir := t.TempDir()
	const n = 3000
	for i := 0; i < n; i++ {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("file-with-a-longish-name-%05d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, ro := range []bool{false, true} {
		root := client(t, Options{Root: dir, ReadOnly: ro})
		_, d, err := root.Walk(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := d.Open(p9.ReadOnly); err != nil {
			t.Fatal(err)
		}
		seen := map[string]int{}
		var off uint64
		for calls := 0; ; calls++ {
			if calls > n {
				t.Fatal("readdir never ends")
			}
			ents, err := d.Readdir(off, 8192) // bytes, as the kernel asks
			if err != nil {
				t.Fatal(err)
			}
			if len(ents) == 0 {
				break
			}
			for _, e := range ents {
				seen[e.Name]++
			}
			off = ents[len(ents)-1].Offset
		}
		if len(seen) != n {
			t.Fatalf("read-only %v: listed %d distinct names of %d", ro, len(seen), n)
		}
		for name, k := range seen {
			if k != 1 {
				t.Fatalf("read-only %v: %s listed %d times", ro, name, k)
			}
		}
	}
}
