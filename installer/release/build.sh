#!/usr/bin/env bash
# Builds a Skiff release into one folder a static web server can serve as it is.
#
#   installer/release/build.sh VERSION BASE_URL DIST
#
# BASE_URL is where DIST will be served from: the binaries pin the guest image as
# BASE_URL/skiff-images.json@sha256:DIGEST, the formula's URLs start with it. DIST is one
# flat folder, so a GitHub release (BASE_URL .../releases/download/vVERSION) can hold it.
# SKIFF_RELEASE_ARCHES (default "amd64 arm64") are the guest images' architectures: a cold
# arm64 root is ~15 CPU-minutes under qemu-user (images/build.sh caches it by recipe).
# SKIFF_WSL_ZSTD_LEVEL (images/wslroot.sh) trades build time for a smaller WSL download.
#
# DIST then holds:
#   skiff_V_OS_ARCH.tar.gz|.zip  the CLI for linux, darwin, windows on amd64 and arm64
#   skiff_V_ARCH.deb             the Debian packages (amd64, arm64)
#   skiff_V_windows_amd64.msi    the Windows installer (wixl)
#   skiff-tray_V_OS_amd64.*      the tray app for linux and windows (amd64; SKIFF_RELEASE_TRAY=0: none)
#   skiff.rb                     the Homebrew formula (archives by URL and sha256)
#   skiff-images.json            the image index the binaries pin
#   skiff-images_ARCH.json, skiff-images_ARCH_*   each guest image: its manifest and files
#   release.json, SHA256SUMS     every file with its size and sha256
# Two builds of one commit are the same bytes (installer/release TestReproducibleRelease):
# every time stamp is the commit's.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/usr/local/go/bin:$PATH

VERSION=${1:?version, e.g. 1.2.3}
BASE=${2:?base URL the release is served from}
DIST=${3:?output folder}
VERSION=${VERSION#v}
[[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+~][0-9A-Za-z.]+)?$ ]] ||
	{ echo "release: version '$VERSION' is not like 1.2.3 or 1.2.3-rc1 (make release VERSION=1.2.3)" >&2; exit 2; }
BASE=${BASE%/}
ARCHES=${SKIFF_RELEASE_ARCHES:-amd64 arm64}
# Not SOURCE_DATE_EPOCH: images/build.sh keys its cached root by that.
EPOCH=$(git log -1 --format=%ct)

step() { printf '\n==> release: %s (%s)\n' "$*" "$(date +%T)"; }

step "tools"
missing=()
for t in wixl:msitools msibuild:msitools msiinfo:msitools dpkg-deb:dpkg; do command -v "${t%:*}" >/dev/null || missing+=("${t#*:}"); done
/usr/bin/python3 -c 'import olefile' 2>/dev/null || missing+=(python3-olefile)
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing: ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out=$DIST.partial
rm -rf "$out"
mkdir -p "$out/.images"
go build -o "$work/release" ./cmd/skiff-release
rel() { "$work/release" "$1" -version "$VERSION" -epoch "$EPOCH" "${@:2}"; }

for arch in $ARCHES; do
	step "guest image $arch"
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath -ldflags "-s -w -X main.version=$VERSION" \
		-o "$work/skiff-agent-linux-$arch" ./cmd/skiff-agent
	images/build.sh "$arch" "$work/skiff-agent-linux-$arch" "$out/.images/$arch"
done
for arch in amd64 arm64; do
	[[ " $ARCHES " == *" $arch "* ]] || echo "release: NO $arch GUEST IMAGE: SKIFF_RELEASE_ARCHES=\"$ARCHES\"; a $arch host cannot start a machine from this release's default image"
done
digest=$(rel index "$out" "$out/.images")
rm -rf "$out/.images"
image=$BASE/skiff-images.json@sha256:$digest
echo "the binaries pin $image"

step "CLI (linux, darwin, windows; amd64, arm64)"
for plat in linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64; do
	goos=${plat%/*} goarch=${plat#*/} exe=skiff
	[ "$goos" = windows ] && exe=skiff.exe
	mkdir -p "$work/$goos-$goarch"
	# cgo off everywhere: a macOS build then has no vz (machine/backends says so), QEMU runs it.
	CGO_ENABLED=0 GOOS=$goos GOARCH=$goarch go build -trimpath \
		-ldflags "-s -w -X github.com/skiff-dev/skiff/installer.Version=$VERSION -X github.com/skiff-dev/skiff/images.DefaultRef=$image" \
		-o "$work/$goos-$goarch/$exe" ./cmd/skiff
	ext=tar.gz
	[ "$goos" = windows ] && ext=zip
	rel archive "$out/skiff_${VERSION}_${goos}_${goarch}.$ext" "$work/$goos-$goarch/$exe"
done

# The tray is cgo (fyne): here it builds for linux/amd64 (gcc) and windows/amd64 (mingw),
# the toolchains .ci/gui-test.sh uses. macOS needs Apple's SDK, arm64 a cross C toolchain.
if [ "${SKIFF_RELEASE_TRAY:-1}" = 1 ]; then
	step "tray app (linux/amd64, windows/amd64)"
	need=()
	for p in gcc pkg-config libgl1-mesa-dev xorg-dev libxkbcommon-dev gcc-mingw-w64-x86-64; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
	if [ ${#need[@]} -gt 0 ]; then
		echo "installing: ${need[*]}"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	fi
	mkdir -p "$work/tray-linux" "$work/tray-windows"
	trayflags="-s -w -X github.com/skiff-dev/skiff/installer.Version=$VERSION -X github.com/skiff-dev/skiff/images.DefaultRef=$image"
	CGO_ENABLED=1 go build -trimpath -ldflags "$trayflags" -o "$work/tray-linux/skiff-tray" ./cmd/skiff-tray
	rel archive "$out/skiff-tray_${VERSION}_linux_amd64.tar.gz" "$work/tray-linux/skiff-tray"
	# windowsgui: no console window behind the tray.
	CGO_ENABLED=1 GOOS=windows CC=x86_64-w64-mingw32-gcc go build -trimpath -ldflags "$trayflags -H windowsgui" \
		-o "$work/tray-windows/skiff-tray.exe" ./cmd/skiff-tray
	rel archive "$out/skiff-tray_${VERSION}_windows_amd64.zip" "$work/tray-windows/skiff-tray.exe"
	echo "release: no tray for darwin (fyne's cgo needs the macOS SDK: build it on a Mac) nor for linux/windows arm64 (no arm64 C cross toolchain set up here)"
else
	echo "release: tray SKIPPED (SKIFF_RELEASE_TRAY=$SKIFF_RELEASE_TRAY); unset it to build the linux/amd64 and windows/amd64 tray"
fi

step "Debian packages"
for arch in amd64 arm64; do
	SOURCE_DATE_EPOCH=$EPOCH installer/deb/build.sh -v "$VERSION" -b "$work/linux-$arch/skiff" -a "$arch" "$out" >/dev/null
done

step "Homebrew formula and MSI"
rel packaging -base "$BASE" -msi "$work/msi" "$out"
cp "$work/windows-amd64/skiff.exe" "$work/msi/"
touch -d "@$EPOCH" "$work/msi/skiff.exe" # the cabinet keeps the file's time
msi=$out/skiff_${VERSION}_windows_amd64.msi
(cd "$work/msi" && wixl -a x64 -o skiff.msi skiff.wxs && msibuild skiff.msi -i Environment.idt)
# The package code: one per MSI content (this version, this skiff.exe), the same per build.
h=$(printf 'skiff-msi-package:%s:%s' "$VERSION" "$(sha256sum <"$work/msi/skiff.exe")" | sha256sum | cut -c1-32)
/usr/bin/python3 installer/release/msistamp.py "$work/msi/skiff.msi" "${h:0:8}-${h:8:4}-5${h:13:3}-8${h:17:3}-${h:20:12}" "$EPOCH"
mv "$work/msi/skiff.msi" "$msi"

step "release manifest"
rel manifest -image "$image" "$out"
rm -rf "$DIST"
mv "$out" "$DIST"
du -sh "$DIST"
echo "release $VERSION in $DIST (pinned image $image)"
