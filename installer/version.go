package installer

import "strings"

// Version is the one source of Skiff's release version: packages, the Homebrew formula
// and the Windows installer are all generated from it. Release builds may override it
// with -ldflags "-X github.com/skiff-dev/skiff/installer.Version=1.2.3".
var Version = "0.1.0"

// Meta describes Skiff for every package format.
type Meta struct {
	Name        string
	Version     string
	Summary     string
	Description string
	Homepage    string
	Maintainer  string
	License     string
	// UpgradeCode ties all MSI versions together so a new one replaces the old one. It
	// must never change.
	UpgradeCode string
}

// PackageMeta returns the package metadata for the current Version.
func PackageMeta() Meta {
	return Meta{
		Name:        "skiff",
		Version:     Version,
		Summary:     "Run containers in a small Linux VM",
		Description: "Skiff boots a small Linux virtual machine running a container engine and\nbrings its API, published ports and shared folders back to the host.",
		Homepage:    "https://github.com/skiff-dev/skiff",
		Maintainer:  "Skiff developers <skiff@skiff.dev>",
		License:     "Apache-2.0",
		UpgradeCode: "7C1B6E0A-3F2D-4B8E-9A51-5D2C8E4F6A10",
	}
}

// numericVersion is the version without pre-release/build suffixes, for formats (MSI)
// that accept only dotted numbers.
func numericVersion(v string) string {
	v = strings.TrimPrefix(v, "v")
	if i := strings.IndexAny(v, "-+~"); i >= 0 {
		v = v[:i]
	}
	return v
}
