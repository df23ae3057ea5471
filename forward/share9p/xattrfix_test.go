//go:build linux || darwin

package share9p

import (
	"context"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/hugelgupf/p9/p9"
)

// writeLog is a server's end of a connection that records each write it is given.
type writeLog struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (w *writeLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.writes = append(w.writes, append([]byte(nil), p...))
	w.mu.Unlock()
	return w.Conn.Write(p)
}

// TestOneWritePerAnswer: every answer reaches the connection in one write, whole, so a
// TCP stream (the user-mode network's) carries it in one segment, not a 7-byte header
// and a body each in its own. Small answers, a large read and a rewritten xattr error.
func TestOneWritePerAnswer(t *testing.T) {
	root := t.TempDir()
	big := make([]byte, 200<<10)
	for i := range big {
		big[i] = byte(i * 7)
	}
	if err := os.WriteFile(filepath.Join(root, "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	w := &writeLog{Conn: a}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Serve(ctx, w, Options{Root: root}); close(done) }()
	defer hangUp(cancel, done)
	c, err := p9.NewClient(b, p9.WithMessageSize(512<<10))
	if err != nil {
		t.Fatal(err)
	}
	top, err := c.Attach("")
	if err != nil {
		t.Fatal(err)
	}
	f := walk(t, top, "big")
	if _, _, _, err := f.GetAttr(p9.AttrMaskAll); err != nil {
		t.Fatal(err)
	}
	if _, err := f.GetXattr("security.capability"); err == nil {
		t.Fatal("an xattr was found on a share that stores none")
	}
	if _, _, err := f.Open(p9.ReadOnly); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(big))
	if n, err := f.ReadAt(got, 0); err != nil || n != len(big) || string(got) != string(big) {
		t.Fatalf("read %d bytes, %v", n, err)
	}
	f.Close()

	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.writes) < 6 {
		t.Fatalf("%d writes for version, attach, walk, getattr, xattrwalk, open and read", len(w.writes))
	}
	for i, m := range w.writes {
		if len(m) < headerLen || int(binary.LittleEndian.Uint32(m)) != len(m) {
			t.Fatalf("write %d of %d bytes is not one whole answer (its header says %d)", i, len(m), binary.LittleEndian.Uint32(m))
		}
	}
}
