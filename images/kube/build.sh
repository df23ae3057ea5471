#!/usr/bin/env bash
# Builds the Kubernetes multi-call binary (main.go) for one architecture, reproducibly.
#
#   images/kube/build.sh ARCH OUTFILE
#
# The version variables are what Kubernetes' own release build sets (hack/lib/version.sh),
# fixed here so that the same sources give the same bytes; a cold build takes ~20 min and
# ~3 GB of Go build cache, a warm one seconds.
set -euo pipefail
ARCH=${1:?arch (amd64|arm64)}
OUT=${2:?output file}
HERE=$(cd "$(dirname "$0")" && pwd)
KUBE_VERSION=v1.35.4
KUBE_COMMIT=0000000000000000000000000000000000000000 # not a git build: the module proxy's v1.35.4
BUILD_DATE=2026-01-01T00:00:00Z
ldflags="-s -w -buildid="
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=35"
	ldflags+=" -X $pkg.gitCommit=$KUBE_COMMIT -X $pkg.gitTreeState=clean -X $pkg.buildDate=$BUILD_DATE"
done
cd "$HERE"
# The toolchain is part of the recipe (go.mod names it): another one gives other bytes.
export GOTOOLCHAIN=go1.27.3
CGO_ENABLED=0 GOOS=linux GOARCH=$ARCH go build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$OUT" .
