#!/usr/bin/env bash
# Builds the Skiff guest image for one architecture from Debian trixie packages.
#
#   images/build.sh ARCH AGENT_BINARY OUTDIR [--variant systemd]
#   images/build.sh --is-cached ARCH [--variant systemd]   exit 0 when the slow stage is cached
#
# Two stages, each cached by a hash of its inputs so that an unchanged recipe is skipped:
#   rootfs  mmdebstrap + prune + squashfs  (slow: minutes; keyed by this script and the lists)
#   initrd  the guest agent as /init plus the few modules needed to mount the root
#           (fast: seconds; keyed by the agent binary and the rootfs key)
# Output in OUTDIR: kernel (bzImage on amd64, uncompressed Image on arm64), initrd.img,
# root.squashfs, packages.lock, trim-report.txt and manifest.json.
set -euo pipefail

QUERY=
if [ "${1:-}" = --is-cached ]; then QUERY=1 && shift; fi
ARCH=${1:?arch (amd64|arm64)}
if [ -n "$QUERY" ]; then
	shift
else
	AGENT=${2:?path to the static skiff-agent binary for ARCH}
	OUT=${3:?output directory}
	shift 3
fi
VARIANT=minimal
if [ "${1:-}" = "--variant" ]; then VARIANT=${2:?variant name}; fi

HERE=$(cd "$(dirname "$0")" && pwd)
MIRROR=${SKIFF_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${SKIFF_IMAGE_CACHE:-/var/cache/skiff/images}
SUITE=trixie
case "$ARCH" in
amd64) KERNEL_NAME=vmlinuz CONSOLE=ttyS0 ;;
arm64) KERNEL_NAME=Image CONSOLE=ttyAMA0 ;;
*) echo "build.sh: unknown arch $ARCH (want amd64 or arm64)" >&2; exit 2 ;;
esac
[ -n "$QUERY" ] || [ -x "$AGENT" ] || { echo "build.sh: agent binary $AGENT is missing or not executable" >&2; exit 2; }

# Build tools are not part of the recipe: installing them never changes the image.
need_tools() {
	local missing=() foreign=
	for t in mmdebstrap mksquashfs cpio zstd xz curl make pkg-config; do command -v "$t" >/dev/null || missing+=("$t"); done
	[ "$ARCH" != "$(dpkg --print-architecture)" ] && foreign=$(qemu_arch)
	if [ -n "$foreign" ] && ! command -v "qemu-$foreign-static" >/dev/null; then missing+=(qemu-user-static); fi
	# The static iptables (rootfs.sh) is compiled for the image's architecture.
	local cc=gcc cross=()
	if [ -n "$foreign" ]; then
		cc=$foreign-linux-gnu-gcc
		cross=("gcc-$foreign-linux-gnu" "libc6-dev-$ARCH-cross")
	fi
	command -v "$cc" >/dev/null || missing+=("$cc")
	if [ ${#missing[@]} -gt 0 ]; then
		echo "build.sh: installing build tools: ${missing[*]}" >&2
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap squashfs-tools cpio zstd xz-utils \
			qemu-user-static binfmt-support curl make gcc libc6-dev pkg-config "${cross[@]}" >/dev/null
	fi
	[ -n "$foreign" ] && enable_binfmt "$foreign"
	return 0
}

# The foreign package scripts run through qemu-user: the kernel must know the handler.
# In a container nothing mounts binfmt_misc or registers the handlers at install time.
enable_binfmt() {
	local a=$1 f=/proc/sys/fs/binfmt_misc
	[ -e "$f/register" ] || mount -t binfmt_misc binfmt_misc "$f" || true
	[ -e "$f/qemu-$a" ] || update-binfmts --enable "qemu-$a" >/dev/null 2>&1 || true
	grep -qx enabled "$f/qemu-$a" 2>/dev/null || {
		echo "build.sh: cannot run $ARCH binaries: binfmt_misc handler qemu-$a is not registered (install qemu-user-static and binfmt-support; in a container, mount binfmt_misc)" >&2
		exit 1
	}
}

qemu_arch() {
	case "$ARCH" in arm64) echo aarch64 ;; amd64) echo x86_64 ;; *) echo "$ARCH" ;; esac
}

# shellcheck source=images/rootfs.sh
. "$HERE/rootfs.sh"

sha() { sha256sum "$@" | cut -c1-64; }

ROOT_KEY=$(cat "$HERE/rootfs.sh" "$HERE/packages.list" "$HERE/prune.list" "$HERE/prune-minimal.list" <(echo "$ARCH $VARIANT $SUITE $SOURCE_DATE_EPOCH") | sha | cut -c1-16)
ROOT_DIR=$CACHE/rootfs-$ARCH-$VARIANT-$ROOT_KEY
if [ -n "$QUERY" ]; then
	[ -f "$ROOT_DIR/root.squashfs" ]
	exit
fi

build_initrd() {
	local dir
	dir=$(mktemp -d)
	mkdir -p "$dir/modules" "$dir/dev" "$dir/proc" "$dir/sys" "$dir/newroot"
	cp "$ROOT_DIR/modules/"* "$dir/modules/"
	install -m 0755 "$AGENT" "$dir/init"
	find "$dir" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
	(cd "$dir" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc --reproducible -R 0:0) |
		zstd -q -19 -T0 >"$OUT/.initrd.img.tmp"
	mv -f "$OUT/.initrd.img.tmp" "$OUT/initrd.img"
	rm -rf "$dir"
}

write_manifest() {
	local files=("$KERNEL_NAME" initrd.img root.squashfs)
	{
		printf '{\n  "schemaVersion": 1,\n  "name": "skiff-guest",\n  "version": "%s",\n  "arch": "%s",\n  "variant": "%s",\n' \
			"$SUITE-$ROOT_KEY-$(sha "$OUT/initrd.img" | cut -c1-8)" "$ARCH" "$VARIANT"
		printf '  "kernelVersion": "%s",\n  "kernelCmdline": "console=%s quiet",\n  "files": [\n' "$(cat "$ROOT_DIR/kernel.version")" "$CONSOLE"
		local i=0
		for f in "${files[@]}"; do
			i=$((i + 1))
			local role=${f%%.*}
			case "$f" in "$KERNEL_NAME") role=kernel ;; initrd.img) role=initrd ;; root.squashfs) role=root ;; esac
			printf '    {"role": "%s", "name": "%s", "size": %d, "sha256": "%s"}%s\n' \
				"$role" "$f" "$(stat -c %s "$OUT/$f")" "$(sha "$OUT/$f")" "$([ $i -lt ${#files[@]} ] && echo ,)"
		done
		printf '  ]\n}\n'
	} >"$OUT/manifest.json"
}

mkdir -p "$CACHE" "$OUT"
if [ -f "$ROOT_DIR/root.squashfs" ]; then
	echo "build.sh: rootfs $ARCH/$VARIANT is cached ($ROOT_KEY), skipping mmdebstrap" >&2
else
	build_rootfs
fi
# Each output is replaced by a new file, never rewritten in place: something may still
# hold the old one open or linked.
for f in "$KERNEL_NAME" packages.lock trim-report.txt dropped-packages.txt root.squashfs; do
	[ -f "$ROOT_DIR/$f" ] || continue
	cp "$ROOT_DIR/$f" "$OUT/.$f.tmp" && mv -f "$OUT/.$f.tmp" "$OUT/$f"
done
build_initrd
write_manifest
total=$(stat -c %s "$OUT/$KERNEL_NAME" "$OUT/initrd.img" "$OUT/root.squashfs" | awk "{s+=\$1} END {print s}")
echo "build.sh: $ARCH/$VARIANT image in $OUT: kernel+initrd+root = $((total / 1048576)) MiB compressed" >&2
