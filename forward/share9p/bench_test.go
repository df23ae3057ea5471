//go:build linux || darwin

package share9p

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/hugelgupf/p9/p9"
)

// unixPair is a connected pair of unix stream sockets: the server's end and the client's,
// closer to the kernel client's socket than net.Pipe.
func unixPair(b testing.TB) (net.Conn, net.Conn) {
	b.Helper()
	ln, err := net.Listen("unix", filepath.Join(b.TempDir(), "s"))
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() { c, _ := ln.Accept(); acc <- c }()
	c, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	return <-acc, c
}

// BenchmarkStatFresh is what the guest's kernel sends for one stat of a file it has not
// seen, without a metadata cache (cache=mmap): walk, getattr (the lookup), getattr (the
// stat), clunk. One op is the four round trips.
func BenchmarkStatFresh(b *testing.B) {
	root := b.TempDir()
	const files = 1000
	for i := range files {
		if err := os.WriteFile(filepath.Join(root, fmt.Sprintf("f%05d", i)), []byte("x"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	srv, cl := unixPair(b)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Serve(ctx, srv, Options{Root: root}); close(done) }()
	defer hangUp(cancel, done)
	c, err := p9.NewClient(cl)
	if err != nil {
		b.Fatal(err)
	}
	top, err := c.Attach("")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		_, f, err := top.Walk([]string{fmt.Sprintf("f%05d", i%files)})
		if err != nil {
			b.Fatal(err)
		}
		for range 2 {
			if _, _, a, err := f.GetAttr(p9.AttrMaskAll); err != nil || a.Size != 1 {
				b.Fatal(a, err)
			}
		}
		f.Close()
	}
}
