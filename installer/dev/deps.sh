#!/usr/bin/env bash
# Installs what building and testing Skiff needs on a Debian/Ubuntu host (run as root).
# Idempotent: it installs only what is missing.
set -euo pipefail
# qemu-system-arm and qemu-user-static: the arm64 image is built (package scripts under
# binfmt) and booted (qemu-system-aarch64, direct kernel boot needs no firmware) here too.
# ovmf boots the Hyper-V boot disk under QEMU (backend qemu-hyperv); gdisk, mtools,
# systemd-boot-efi (the EFI stub) and python3-pefile (for ukify) make that disk. gcc: the
# race detector (go test -race) needs cgo. podman: the podman CLI (bookworm's 4.3) as a remote
# client of podman machines (machine/e2e/podman_test.go).
pkgs=(qemu-system-x86 qemu-system-arm qemu-user-static binfmt-support qemu-utils mmdebstrap squashfs-tools
	cpio zstd xz-utils e2fsprogs busybox-static tmux curl iproute2 docker-compose
	ovmf gdisk mtools systemd-boot-efi python3-pefile gcc libc6-dev podman)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v docker >/dev/null || missing+=(docker.io)
apt_install() {
	echo "deps: installing $*" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
# virtiofsd serves --share-type virtiofs: Debian 12 ships QEMU's own in qemu-system-common
# (/usr/lib/qemu), later releases the Rust one as the package virtiofsd (/usr/libexec).
if ! command -v virtiofsd >/dev/null && [ ! -x /usr/libexec/virtiofsd ] && [ ! -x /usr/lib/qemu/virtiofsd ]; then
	apt_install virtiofsd
fi
# The docker CLI's Compose v2 and buildx plugins (`docker compose`, `docker buildx`), as a user
# of this host would install them: Debian trixie's docker-compose and docker-buildx packages
# (Go binaries that need only libc6 >= 2.34, so they run on bookworm). trixie's
# docker-compose replaces the Compose v1 package of bookworm and keeps `docker-compose` as a
# link to the plugin. The trixie index goes to a scratch directory, not the host's apt lists.
plugins=/usr/libexec/docker/cli-plugins
if [ ! -x "$plugins/docker-compose" ] || [ ! -x "$plugins/docker-buildx" ]; then
	echo "deps: installing docker-compose and docker-buildx from Debian trixie" >&2
	trixie=$(mktemp -d)
	mkdir -p "$trixie/lists/partial" "$trixie/archives/partial"
	echo "deb http://deb.debian.org/debian trixie main" >"$trixie/sources.list"
	tapt=(-o Dir::Etc::SourceList="$trixie/sources.list" -o Dir::Etc::SourceParts=/dev/null
		-o Dir::State::Lists="$trixie/lists" -o Dir::Cache::Archives="$trixie/archives"
		-o APT::Sandbox::User=root)
	apt-get "${tapt[@]}" update -qq
	(cd "$trixie" && apt-get "${tapt[@]}" download -qq docker-compose docker-buildx)
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$trixie"/docker-compose_*.deb "$trixie"/docker-buildx_*.deb >/dev/null
	rm -rf "$trixie"
fi
docker compose version >/dev/null && docker buildx version >/dev/null
