#!/usr/bin/env bash
# Builds the engine's multi-call binary (main.go) for one architecture, reproducibly, as
# OUTDIR/containerd-shim-runc-v2: containerd starts the long-lived shim as the resolved
# file, so under that name the shims' processes keep the name they have with Debian's
# binaries rather than "dockerd". And dockerd's userland proxy from the same moby module as
# OUTDIR/docker-proxy (a program of its own: dockerd starts it with the listening socket
# already open, in a protocol that is moby's, so Debian's older docker-proxy refuses).
#
#   images/engine/build.sh ARCH OUTDIR [TAGS]
#
# TAGS (default below) leave out what a Skiff machine never uses: the btrfs, zfs and
# devmapper storage, fuse-overlayfs (rootless), containerd's tracing plugin and dockerd's
# experimental in-process containerd. containerd's CRI stays in (+1.2 MB packed): a
# Kubernetes machine's kubelet talks to it (images/kubelayer.sh); the configuration turns
# it off on every other machine (images/engine/etc/containerd/config.toml).
#
# The version variables are what moby's release build sets (hack/make/.go-autogen), fixed
# here so that the same sources give the same bytes. The module versions are not Docker's:
# each moby/v2 module version is the commit of a Docker release (or of master between
# two), named by releases/versions.yaml in the module (at a release's commit "next" is
# that release; master moves "last" to it and "next" to the next minor), so `docker
# version` says the release, "+skiff" (built here, from the module), and the module
# version as its commit: the module proxy carries no VCS hash.
set -euo pipefail
ARCH=${1:?arch (amd64|arm64)}
OUT=${2:?output directory}
HERE=$(cd "$(dirname "$0")" && pwd)
TAGS=${3:-netgo osusergo static_build nri_no_wasm no_btrfs no_devmapper no_zfs no_tracing no_embedded_containerd exclude_graphdriver_btrfs exclude_graphdriver_zfs exclude_graphdriver_fuseoverlayfs}
cd "$HERE"
# The versions come from go.mod, so that the binary reports what it was built from.
mod_version() { go list -m -f '{{.Version}}' "$1"; }
# docker_release VERSIONS_YAML prints the Docker release of the module's commit: versions.yaml's
# docker "next" (see above), which the build refuses to guess when it is missing.
docker_release() {
	local v
	v=$(awk '/^docker:/ {d = 1; next} /^[^ ]/ {d = 0} d && $1 == "next:" {gsub(/"/, "", $2); print $2}' "$1")
	[[ $v =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "engine/build.sh: no docker release in $1" >&2 && return 1; }
	echo "$v"
}
# The toolchain is part of the recipe (go.mod names it): another one gives other bytes.
export GOTOOLCHAIN=go1.27.3
MOBY_VERSION=$(mod_version github.com/moby/moby/v2)
CONTAINERD_VERSION=$(mod_version github.com/containerd/containerd/v2)
go mod download github.com/moby/moby/v2
DOCKER_VERSION=$(docker_release "$(go list -m -f '{{.Dir}}' github.com/moby/moby/v2)/releases/versions.yaml")
ldflags="-s -w -buildid="
ldflags+=" -X github.com/moby/moby/v2/dockerversion.Version=$DOCKER_VERSION+skiff"
ldflags+=" -X github.com/moby/moby/v2/dockerversion.GitCommit=moby-$MOBY_VERSION"
ldflags+=" -X github.com/moby/moby/v2/dockerversion.PlatformName=Skiff"
ldflags+=" -X github.com/moby/moby/v2/dockerversion.BuildTime=2026-01-01T00:00:00Z"
ldflags+=" -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
ldflags+=" -X github.com/containerd/containerd/v2/version.Revision=$CONTAINERD_VERSION"
mkdir -p "$OUT"
# Patches to the sources: patches/MODULE@VERSION/*.patch are applied, in name order, to a
# copy of that module in .patched/, which a copy of go.mod replaces it with. Each patch
# says at its top what it fixes. One for a version go.mod no longer names fails the build,
# so none goes stale unseen. The replacement is a relative path, which is what the
# binary's build information records: the same bytes from any checkout.
rm -rf .patched
modfile=()
while IFS= read -r dir; do
	mv=${dir#patches/}
	mod=${mv%@*} ver=${mv##*@}
	have=$(mod_version "$mod")
	[ "$have" = "$ver" ] || { echo "engine/build.sh: $dir is for $mod $ver, go.mod has $have" >&2 && exit 1; }
	go mod download "$mod"
	mkdir -p ".patched/$mv"
	cp -r "$(go list -m -f '{{.Dir}}' "$mod")/." ".patched/$mv"
	chmod -R u+w ".patched/$mv"
	for p in "$dir"/*.patch; do patch -s -p1 -d ".patched/$mv" <"$p"; done
	[ ${#modfile[@]} -gt 0 ] || { cp go.mod .patched/go.mod && cp go.sum .patched/go.sum && modfile=(-modfile=.patched/go.mod); }
	go mod edit "${modfile[@]}" -replace "$mod=./.patched/$mv"
done < <(find patches -mindepth 1 -type d -name '*@*' 2>/dev/null | sort)
build() { CGO_ENABLED=0 GOOS=linux GOARCH=$ARCH go build "${modfile[@]}" -trimpath -buildvcs=false "$@"; }
build -tags "$TAGS" -ldflags "$ldflags" -o "$OUT/containerd-shim-runc-v2" .
# go.mod's tool line keeps its packages in the module graph.
build -ldflags "-s -w -buildid=" -o "$OUT/docker-proxy" github.com/moby/moby/v2/cmd/docker-proxy
