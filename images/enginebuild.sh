#!/usr/bin/env bash
# The Docker engine's binaries, built from source into one multi-call binary (issue 25,
# part 3): images/engine, dockerd + containerd + containerd-shim-runc-v2 in one file.
#
#   images/enginebuild.sh ARCH               build unless cached; print the directory
#   images/enginebuild.sh --is-cached ARCH   exit 0 when it is cached
#
# The directory, CACHE/engine-ARCH-KEY (CACHE is SKIFF_IMAGE_CACHE or
# /var/cache/skiff/images, KEY a hash of the recipe: this file and images/engine), holds
#   bin/containerd-shim-runc-v2  the binary; it runs as the name it is run by
#   bin/dockerd, bin/containerd  links to it
#   bin/docker-proxy             dockerd's userland proxy, built from the same moby module
#   etc/docker/daemon.json, etc/containerd/config.toml
#                                their configuration (images/engine/etc), which goes over the
#                                root's in the layer. daemon.json keeps Docker 26's
#                                "ip6tables": false: Docker 27 turned it on, which put ~40
#                                ip6tables runs and an nft run on every start's critical
#                                path for networks that have no IPv6 unless asked for,
#                                and makes crun the default runtime, as the root's does.
#                                Containers log with the "local" driver, which Docker
#                                recommends where Kubernetes does not read the files: it
#                                rotates and compresses, and `docker logs` decodes its
#                                records ~2.5x faster than json-file's under emulation
#                                (skiff-bench api -log-drivers json-file,local)
#   engine-versions.lock         the module versions, toolchain and build tags it was built from
# for a root or layer recipe to copy (cp -a keeps the links). Debian's three binaries are
# 42 MB compressed, this one ~23 MB: as separate Go programs they each carry their own copy
# of the libraries they share. The OCI runtime is the image's: crun (rootfs.sh
# runc_is_crun).
#
# The build needs only the Go module proxy and takes ~5 min and ~1.5 GB of Go build cache
# cold, seconds warm; the same recipe gives the same bytes (-trimpath, no VCS stamp, fixed
# version strings, the toolchain pinned in images/engine/build.sh).
set -euo pipefail

QUERY=
if [ "${1:-}" = --is-cached ]; then QUERY=1 && shift; fi
ARCH=${1:?arch (amd64|arm64)}
case "$ARCH" in amd64 | arm64) ;; *) echo "enginebuild.sh: unknown arch $ARCH (want amd64 or arm64)" >&2 && exit 2 ;; esac
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${SKIFF_IMAGE_CACHE:-/var/cache/skiff/images}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1735689600}

ENGINE_KEY=$(cat "$HERE/enginebuild.sh" "$HERE"/engine/{go.mod,go.sum,build.sh} "$HERE"/engine/etc/docker/daemon.json "$HERE"/engine/etc/containerd/config.toml \
	<(cd "$HERE/engine" && find . -path ./.patched -prune -o -name '*.go' ! -name '*_test.go' -print | LC_ALL=C sort | xargs cat) \
	<(cd "$HERE/engine" && find patches -type f 2>/dev/null | LC_ALL=C sort | xargs -r cat) <(echo "$ARCH $SOURCE_DATE_EPOCH") | sha256sum | cut -c1-16)
ENGINE_DIR=$CACHE/engine-$ARCH-$ENGINE_KEY
# The file is the shim's: containerd starts the long-lived shim as the resolved file, and
# its processes keep the name they have with Debian's binaries (`pkill dockerd` kills dockerd).
FILE=containerd-shim-runc-v2
NAMES=(dockerd containerd)

if [ -n "$QUERY" ]; then
	[ -x "$ENGINE_DIR/bin/$FILE" ]
	exit
fi
if [ ! -x "$ENGINE_DIR/bin/$FILE" ]; then
	export PATH=/usr/local/go/bin:$PATH
	command -v go >/dev/null || { echo "enginebuild.sh: needs go on PATH" >&2 && exit 1; }
	echo "enginebuild.sh: building the engine for $ARCH (images/engine)" >&2
	tmp=$ENGINE_DIR.tmp
	rm -rf "$tmp"
	mkdir -p "$tmp/bin"
	start=$SECONDS
	"$HERE/engine/build.sh" "$ARCH" "$tmp/bin"
	for n in "${NAMES[@]}"; do ln -s "$FILE" "$tmp/bin/$n"; done
	cp -r "$HERE/engine/etc" "$tmp/etc"
	(cd "$HERE/engine" && GOTOOLCHAIN=go1.27.3 go list -m -f '{{.Path}} {{.Version}}' \
		github.com/moby/moby/v2 github.com/containerd/containerd/v2 &&
		echo "toolchain $(GOTOOLCHAIN=go1.27.3 go env GOVERSION)" &&
		echo "tags $(sed -n 's/^TAGS=${3:-\(.*\)}$/\1/p' build.sh)") >"$tmp/engine-versions.lock"
	find "$tmp" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
	mkdir -p "$CACHE"
	rm -rf "$ENGINE_DIR"
	mv "$tmp" "$ENGINE_DIR"
	echo "enginebuild.sh: engine $ARCH ($ENGINE_KEY) in $((SECONDS - start)) s: $(sha256sum "$ENGINE_DIR/bin/$FILE" | cut -c1-16)…, $(($(stat -c %s "$ENGINE_DIR/bin/$FILE") / 1048576)) MiB" >&2
fi
echo "$ENGINE_DIR"
