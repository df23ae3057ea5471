package main

import (
	"context"
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

func needGo(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go tool not on PATH")
	}
}

// repoRoot is the skiff module root, whose go.mod pins vz.
func repoRoot(t *testing.T) string {
	dir, err := filepath.Abs("../../../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("module root not found: %v", err)
	}
	return dir
}

// exportedAPI lists the exported names a package declares for darwin/arch, methods as
// Type.Method.
func exportedAPI(t *testing.T, dir, arch string) map[string]bool {
	t.Helper()
	ctxt := build.Default
	ctxt.GOOS, ctxt.GOARCH, ctxt.CgoEnabled = "darwin", arch, true
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	api := map[string]bool{}
	for _, e := range ents {
		n := e.Name()
		if !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		if ok, err := ctxt.MatchFile(dir, n); err != nil || !ok {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(dir, n), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				name := d.Name.Name
				if d.Recv != nil {
					rt := d.Recv.List[0].Type
					if s, ok := rt.(*ast.StarExpr); ok {
						rt = s.X
					}
					if id, ok := rt.(*ast.Ident); ok {
						name = id.Name + "." + name
					}
				}
				if d.Name.IsExported() {
					api[name] = true
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						if s.Name.IsExported() {
							api[s.Name.Name] = true
						}
					case *ast.ValueSpec:
						for _, n := range s.Names {
							if n.IsExported() {
								api[n.Name] = true
							}
						}
					}
				}
			}
		}
	}
	return api
}

func TestGenerateKeepsExportedAPI(t *testing.T) {
	needGo(t)
	src, err := ModuleSource(context.Background(), repoRoot(t), Module)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if err := Generate(src, out, Module); err != nil {
		t.Fatal(err)
	}
	for _, arch := range stubArches {
		want := exportedAPI(t, src, arch)
		got := exportedAPI(t, out, arch)
		if len(want) < 100 {
			t.Fatalf("darwin/%s: only %d exported names in vz; parsing went wrong", arch, len(want))
		}
		var missing []string
		for n := range want {
			// char is vz's unexported wrapper of C.char; its method is not vz's API.
			if !got[n] && n != "char.CString" {
				missing = append(missing, n)
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			t.Errorf("darwin/%s: stub lacks %v", arch, missing)
		}
	}
	// No cgo and no build lines other than an architecture may survive.
	err = filepath.Walk(out, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() || !strings.HasSuffix(p, ".go") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.Contains(string(b), `"C"`) || strings.Contains(string(b), "C.") && regexp.MustCompile(`\bC\.[A-Za-z_]`).Match(b) {
			t.Errorf("%s still uses cgo", p)
		}
		if m := regexp.MustCompile(`(?m)^//go:build (.*)$`).FindSubmatch(b); m != nil && string(m[1]) != "arm64" && string(m[1]) != "amd64" {
			t.Errorf("%s keeps build constraint %q", p, m[1])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

const goodUser = `//go:build darwin

package vzuser

import "github.com/Code-Hex/vz/v3"

func Boot(kernel string) (*vz.VirtualMachine, error) {
	bl, err := vz.NewLinuxBootLoader(kernel, vz.WithCommandLine("console=hvc0"))
	if err != nil {
		return nil, err
	}
	cfg, err := vz.NewVirtualMachineConfiguration(bl, 2, 1<<30)
	if err != nil {
		return nil, err
	}
	return vz.NewVirtualMachine(cfg)
}
`

// badUser passes a string where vz wants a CPU count.
var badUser = strings.Replace(goodUser, "(bl, 2, 1<<30)", `(bl, "two", 1<<30)`, 1)

// rosettaUser uses arm64-only API in a file that also builds for amd64: wrong on an Intel Mac.
const rosettaUser = `//go:build darwin

package vzuser

import "github.com/Code-Hex/vz/v3"

func HasRosetta() bool {
	return vz.LinuxRosettaDirectoryShareAvailability() == vz.LinuxRosettaAvailabilityInstalled
}
`

// userModule writes a module holding one vz-using package whose source is src.
func userModule(t *testing.T, files map[string]string) string {
	t.Helper()
	root := repoRoot(t)
	dir := t.TempDir()
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "go.mod" {
			b = regexp.MustCompile(`(?m)^module .*$`).ReplaceAll(b, []byte("module example.com/vzuser"))
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func check(t *testing.T, dir string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := Check(ctx, CheckOptions{ModuleDir: dir})
	return string(out), err
}

func TestCheckPassesCorrectCode(t *testing.T) {
	needGo(t)
	dir := userModule(t, map[string]string{"boot.go": goodUser})
	before, _ := os.ReadFile(filepath.Join(dir, "go.mod"))
	if out, err := check(t, dir); err != nil {
		t.Fatalf("correct vz code failed the check: %v\n%s", err, out)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "go.mod"))
	if string(before) != string(after) {
		t.Fatal("the check edited the module's own go.mod")
	}
}

func TestCheckCatchesTypeError(t *testing.T) {
	needGo(t)
	dir := userModule(t, map[string]string{"boot.go": badUser})
	out, err := check(t, dir)
	if err == nil {
		t.Fatalf("a type error in vz-using code passed the check:\n%s", out)
	}
	if !strings.Contains(out, "boot.go") || !strings.Contains(out, `cannot use "two"`) {
		t.Fatalf("check failed without the type error:\n%s", out)
	}
}

func TestCheckCatchesArm64OnlyAPIOnIntel(t *testing.T) {
	needGo(t)
	dir := userModule(t, map[string]string{"rosetta.go": rosettaUser})
	out, err := check(t, dir)
	if err == nil {
		t.Fatalf("arm64-only vz API in a file built for amd64 passed the check:\n%s", out)
	}
	if !strings.Contains(out, "LinuxRosettaDirectoryShareAvailability") || !strings.Contains(err.Error(), "darwin/amd64") ||
		strings.Contains(err.Error(), "darwin/arm64") {
		t.Fatalf("want a failure on darwin/amd64 only: %v\n%s", err, out)
	}
}
