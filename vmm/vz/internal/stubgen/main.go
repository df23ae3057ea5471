// Command stubgen lets Linux type-check code that uses github.com/Code-Hex/vz without the
// macOS SDK. vz is cgo over Objective-C, so GOOS=darwin builds need Apple's headers; the stub
// keeps vz's exported API (parsed from the module's own source, so it cannot drift from the
// pinned version) and drops everything cgo.
//
//	stubgen gen -out DIR                 write the stub module into DIR
//	stubgen check [-dir MOD] [PKGS...]   stub vz, then go vet MOD for darwin/arm64 and darwin/amd64
//
// The stub is written to a temporary directory and never committed.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
)

// Module is the module the stub stands in for.
const Module = "github.com/Code-Hex/vz/v3"

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	ctx := context.Background()
	switch os.Args[1] {
	case "gen":
		fs := flag.NewFlagSet("gen", flag.ExitOnError)
		out := fs.String("out", "", "directory to write the stub module into")
		dir := fs.String("dir", ".", "module whose go.mod pins the vz version")
		fs.Parse(os.Args[2:])
		if *out == "" {
			usage()
		}
		src, err := ModuleSource(ctx, *dir, Module)
		if err == nil {
			err = Generate(src, *out, Module)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "stubgen:", err)
			os.Exit(1)
		}
	case "check":
		fs := flag.NewFlagSet("check", flag.ExitOnError)
		dir := fs.String("dir", ".", "module to type-check")
		fs.Parse(os.Args[2:])
		out, err := Check(ctx, CheckOptions{ModuleDir: *dir, Packages: fs.Args()})
		os.Stderr.Write(out)
		if err != nil {
			fmt.Fprintln(os.Stderr, "stubgen:", err)
			os.Exit(1)
		}
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: stubgen gen -out DIR [-dir MODULE] | stubgen check [-dir MODULE] [PACKAGES...]")
	os.Exit(2)
}
