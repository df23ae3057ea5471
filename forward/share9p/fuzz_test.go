//go:build linux || darwin

package share9p

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hugelgupf/p9/p9"
)

// FuzzPathHandling runs a program of 9P operations with fuzzed names against the
// server's nodes directly (so names the p9 server would refuse still reach them), mixed
// with host-side swaps of names for symlinks that point out of the share or into the
// denied folder. Whatever the program, nothing outside the share and nothing in the
// denied folder is read or changed.
func FuzzPathHandling(f *testing.F) {
	f.Add([]byte{0x00, 0x80}, "d|f")
	f.Add([]byte{0x00, 0xe0, 0x01, 0x81}, "d|f")
	f.Add([]byte{0x00, 0x90, 0xa0}, "top")
	f.Add([]byte{0x00, 0x10, 0x60, 0x70}, "a|skiff|x")
	f.Add([]byte{0x20, 0x40, 0x50, 0x61}, "n|../out|m")
	f.Add([]byte{0x00, 0x01, 0xc0, 0xd1}, "..|.|/|a/skiff")
	f.Add([]byte{0xe1, 0x01, 0x21, 0x81, 0x91}, "d|f|out")
	f.Fuzz(func(t *testing.T, prog []byte, nameList string) {
		if len(prog) > 64 {
			prog = prog[:64]
		}
		base := t.TempDir()
		root := filepath.Join(base, "share")
		out := filepath.Join(base, "out")
		home := filepath.Join(root, "a", "skiff")
		for _, d := range []string{filepath.Join(root, "d"), out, home} {
			must(t, os.MkdirAll(d, 0o755))
		}
		must(t, os.WriteFile(filepath.Join(root, "d", "f"), []byte("inside"), 0o644))
		must(t, os.WriteFile(filepath.Join(root, "top"), []byte("top"), 0o644))
		must(t, os.WriteFile(filepath.Join(out, "secret"), []byte("SECRET"), 0o644))
		must(t, os.WriteFile(filepath.Join(home, "key"), []byte("SECRET"), 0o600))
		guarded := func() string { return snapshot(t, out) + snapshot(t, home) + listing(t, base) }
		before := guarded()

		names := strings.Split(nameList, "|")
		if len(names) > 8 {
			names = names[:8]
		}
		fids := []p9.File{direct(t, Options{Root: root, Deny: []string{home}}, 0o022)}
		defer func() {
			for _, f := range fids {
				f.Close()
			}
		}()
		buf := make([]byte, 64)
		for _, b := range prog {
			op, arg := b>>4, int(b&0xf)
			f := fids[arg%len(fids)]
			other := fids[(arg/2)%len(fids)]
			name := names[arg%len(names)]
			name2 := names[(arg+1)%len(names)]
			switch op {
			case 0:
				if _, g, err := f.Walk([]string{name}); err == nil {
					fids = append(fids, g)
				}
			case 1:
				if _, g, err := f.Walk(nil); err == nil {
					fids = append(fids, g)
				}
			case 2:
				if g, _, _, err := f.Create(name, p9.ReadWrite, 0o666, 0, 0); err == nil {
					g.WriteAt([]byte("new"), 0)
					fids = append(fids, g)
				}
			case 3:
				f.Mkdir(name, 0o777, 0, 0)
			case 4:
				f.Symlink(name2, name, 0, 0)
			case 5:
				f.Link(other, name)
			case 6:
				f.RenameAt(name, other, name2)
			case 7:
				f.UnlinkAt(name, uint32(arg&1)*atRemoveDir)
			case 8:
				if _, _, err := f.Open(p9.ReadOnly); err == nil {
					if n, _ := f.ReadAt(buf, 0); bytes.Contains(buf[:n], []byte("SECRET")) {
						t.Fatalf("read a guarded file: %q", buf[:n])
					}
				}
			case 9:
				if _, _, err := f.Open(p9.ReadWrite | dotlTrunc); err == nil {
					f.WriteAt([]byte("overwritten"), 0)
				}
			case 10:
				f.SetAttr(p9.SetAttrMask{Size: true, Permissions: true, MTime: true, MTimeNotSystemTime: true},
					p9.SetAttr{Size: 1, Permissions: 0o777, MTimeSeconds: 1})
			case 11:
				f.Readlink()
			case 12:
				if _, _, err := f.Open(p9.ReadOnly); err == nil {
					f.Readdir(0, 1<<16)
				}
			case 13:
				f.GetAttr(p9.AttrMaskAll)
			case 14:
				// The host (or another mount) swaps a name in the share for a symlink.
				if checkName(name) != nil || name == "a" {
					continue
				}
				target := []string{"../out", out, "a/skiff", "../../out/secret"}[arg%4]
				for _, dir := range []string{root, filepath.Join(root, "d")} {
					if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
						continue // the harness itself must not follow its symlinks
					}
					p := filepath.Join(dir, name)
					os.Rename(p, p+".old")
					os.Symlink(target, p)
				}
			case 15:
				f.Close()
			}
		}
		if after := guarded(); after != before {
			t.Fatalf("guarded files changed:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}

// listing names what is directly in dir, so nothing new appears beside the share.
func listing(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range ents {
		b.WriteString(e.Name() + "\n")
	}
	return b.String()
}
