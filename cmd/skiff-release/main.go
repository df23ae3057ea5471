// Command skiff-release writes the parts of a Skiff release that installer/release/build.sh
// does not get from other tools (see package installer/release): the image index the
// binaries pin, byte-stable archives of the binaries, the Homebrew formula and the
// wixl-ready WiX source, and the release manifest with SHA256SUMS.
//
//	skiff-release index DIST BUILT                 move BUILT/ARCH/ images into DIST, flat, with
//	                                         their index; print the index's sha256
//	skiff-release archive OUT BINARY               OUT.tar.gz or OUT.zip holding BINARY at its top
//	skiff-release packaging -base URL -msi DIR DIST    DIST/skiff.rb; DIR/skiff.wxs, Environment.idt
//	skiff-release manifest -image REF DIST         DIST/release.json and DIST/SHA256SUMS
//
// -version V sets the release's version (installer.Version) for packaging and manifest.
//
// build.sh runs it; it is not shipped.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/skiff-dev/skiff/installer"
	"github.com/skiff-dev/skiff/installer/release"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "skiff-release:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: release index|archive|packaging|manifest ...")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	base := fs.String("base", "", "URL the release is served from")
	msiDir := fs.String("msi", "", "folder for the WiX source and the Environment table")
	image := fs.String("image", "", "the image reference the binaries pin")
	epoch := fs.Int64("epoch", 0, "time stamp of archive entries (seconds since 1970)")
	version := fs.String("version", "", "the release's version (default: installer.Version)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *version != "" {
		installer.Version = *version
	}
	rest := fs.Args()
	need := func(n int) error {
		if len(rest) != n {
			return fmt.Errorf("%s: want %d arguments, got %d", args[0], n, len(rest))
		}
		return nil
	}
	switch args[0] {
	case "index":
		if err := need(2); err != nil {
			return err
		}
		sum, err := release.WriteIndex(rest[0], rest[1])
		if err != nil {
			return err
		}
		fmt.Println(sum)
		return nil
	case "archive":
		if err := need(2); err != nil {
			return err
		}
		return release.WriteArchive(rest[0], rest[1], *epoch)
	case "packaging":
		if err := need(1); err != nil {
			return err
		}
		return release.WritePackaging(rest[0], *base, *msiDir)
	case "manifest":
		if err := need(1); err != nil {
			return err
		}
		return release.WriteManifest(rest[0], *image)
	}
	return fmt.Errorf("unknown command %q (want index, archive, packaging or manifest)", args[0])
}
