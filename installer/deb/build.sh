#!/bin/bash
# Build the Debian package of the skiff CLI.
#   installer/deb/build.sh [-b BINARY] [-a GOARCH] [-v VERSION] OUTDIR
# Without -b it builds ./cmd/skiff for GOARCH with the version from installer/version.go
# (or -v). Prints the path of the .deb. With SOURCE_DATE_EPOCH set, the package is the
# same bytes on every build: every file and the archive members carry that time.
set -euo pipefail
cd "$(dirname "$0")/../.."

binary= goarch=$(go env GOARCH) setversion=
while getopts b:a:v: o; do
	case $o in
	b) binary=$OPTARG ;;
	a) goarch=$OPTARG ;;
	v) setversion=$OPTARG ;;
	*) echo "usage: $0 [-b BINARY] [-a GOARCH] [-v VERSION] OUTDIR" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 1 ] || { echo "usage: $0 [-b BINARY] [-a GOARCH] [-v VERSION] OUTDIR" >&2; exit 2; }
out=$1
mkdir -p "$out"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build ${setversion:+-ldflags "-X github.com/skiff-dev/skiff/installer.Version=$setversion"} -o "$work/skiffpkg" ./cmd/skiffpkg
version=$("$work/skiffpkg" version)
if [ -z "$binary" ]; then
	binary=$work/skiff
	CGO_ENABLED=0 GOOS=linux GOARCH=$goarch go build -trimpath \
		-ldflags "-s -w -X main.version=$version -X github.com/skiff-dev/skiff/installer.Version=$version" \
		-o "$binary" ./cmd/skiff
fi
"$work/skiffpkg" deb-tree --binary "$binary" --goarch "$goarch" "$work/tree"
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
	find "$work/tree" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
fi
debarch=$(sed -n 's/^Architecture: //p' "$work/tree/DEBIAN/control")
debversion=$(sed -n 's/^Version: //p' "$work/tree/DEBIAN/control")
deb=$out/skiff_${debversion}_${debarch}.deb
# --root-owner-group: files belong to root in the package whoever builds it.
dpkg-deb --root-owner-group -Zxz --build "$work/tree" "$deb" >/dev/null
echo "$deb"
