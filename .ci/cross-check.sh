#!/usr/bin/env bash
# Type-checks the code that cannot run on the Linux CI machine:
#  - darwin/arm64 and darwin/amd64: go vet against a stub of github.com/Code-Hex/vz
#    generated from the pinned vz source (vz is cgo over the macOS SDK, which Linux lacks).
#    The stub lives in a temp dir and a temp copy of go.mod; the real go.mod is untouched.
#  - windows/amd64 and windows/arm64: go build and go vet of the whole module.
# Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

# Guest-side commands run only in the Linux VM. Listed by hand, not filtered by "does it
# build", so that a host package that stops building for Windows or macOS still fails here.
guest_only=(
	github.com/skiff-dev/skiff/cmd/skiff-agent
	# The fyne GUI needs cgo and a C toolchain per target: .ci/gui-test.sh cross-builds it
	# for Windows with mingw and vets its cgo-free packages for darwin.
	github.com/skiff-dev/skiff/gui/ui
	github.com/skiff-dev/skiff/gui/e2e
	github.com/skiff-dev/skiff/cmd/skiff-tray
)
# host_pkgs GOOS [FORMAT]: the module's packages that have files for GOOS, minus
# guest_only. Test-only packages (no GoFiles) are vetted but cannot be built.
all_fmt='{{.ImportPath}}'
host_pkgs() {
	GOOS=$1 go list -e -f "${2:-$all_fmt}" ./... | grep . | grep -vxF -f <(printf '%s\n' "${guest_only[@]}")
}

mapfile -t pkgs < <(host_pkgs windows)
mapfile -t build_pkgs < <(host_pkgs windows '{{if .GoFiles}}{{.ImportPath}}{{end}}')
for arch in amd64 arm64; do
	step "windows/$arch: go build && go vet (host packages)"
	GOOS=windows GOARCH=$arch CGO_ENABLED=0 go build "${build_pkgs[@]}"
	GOOS=windows GOARCH=$arch CGO_ENABLED=0 go vet "${pkgs[@]}"
done

step "darwin/arm64 + darwin/amd64: go vet (host packages) against the vz stub"
# Build the checker for the host first: it must not inherit GOOS=darwin.
mapfile -t pkgs < <(host_pkgs darwin)
tool=$(mktemp -d)
trap 'rm -rf "$tool"' EXIT
go build -o "$tool/stubgen" ./vmm/vz/internal/stubgen
"$tool/stubgen" check -dir . "${pkgs[@]}"

step "cross-check passed"
