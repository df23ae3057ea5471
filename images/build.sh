#!/usr/bin/env bash
# Builds the Skiff guest image for one architecture from Debian trixie packages.
#
#   images/build.sh ARCH AGENT_BINARY OUTDIR [--variant systemd] [--kube] [--engine-bin ENGINE=DIR] [--packaged-engine]
#   images/build.sh --is-cached ARCH [--variant systemd] [--kube]   exit 0 when the slow stages are cached
#
# --kube builds the Kubernetes layer (kubelayer.sh) when it is not cached; without it the
# image gets the layer only if it is cached. --is-cached --kube asks about the layer.
# The docker layer carries the Docker engine built from source (enginebuild.sh: one
# multi-call binary, cached by its recipe; ~10 min cold) in place of Debian's dockerd,
# containerd and shim; --packaged-engine keeps Debian's. --engine-bin ENGINE=DIR puts the
# programs in DIR (a locally built engine) into ENGINE's layer in place of the packaged
# ones of the same name (engine_layer).
#
# Two stages, each cached by a hash of its inputs so that an unchanged recipe is skipped:
#   rootfs  mmdebstrap + prune + squashfs  (slow: minutes; keyed by this script and the lists)
#   initrd  the guest agent as /init plus the few modules needed to mount the root
#           (fast: seconds; keyed by the agent binary and the rootfs key)
# Output in OUTDIR: kernel (bzImage on amd64, uncompressed Image on arm64), initrd.img.zst,
# root.squashfs.zst (the base every machine boots), engine-ENGINE.squashfs.zst (one layer
# per engine, stacked over the base by the guest; a machine downloads only its engine's),
# packages.lock, trim-report.txt and manifest.json. The initrd and the
# root are zstd-packed for the download only; the manifest gives each one's digest both
# packed and unpacked, and the install unpacks them (images.Install).
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
KUBE=auto
declare -A ENGINE_BIN=()
PACKAGED_ENGINE=
while [ $# -gt 0 ]; do
	case $1 in
	--variant) VARIANT=${2:?variant name} && shift 2 ;;
	--kube) KUBE=build && shift ;;
	--packaged-engine) PACKAGED_ENGINE=1 && shift ;;
	--engine-bin)
		[[ ${2:-} == ?*=?* ]] || { echo "build.sh: --engine-bin wants ENGINE=DIR" >&2; exit 2; }
		ENGINE_BIN[${2%%=*}]=$(cd "${2#*=}" && pwd) && shift 2 ;;
	*) echo "build.sh: unknown option $1" >&2; exit 2 ;;
	esac
done

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
	for t in mmdebstrap mksquashfs cpio zstd xz curl make pkg-config readelf; do command -v "$t" >/dev/null || missing+=("$t"); done
	[ "$ARCH" != "$(dpkg --print-architecture)" ] && foreign=$(qemu_arch)
	if [ -n "$foreign" ] && ! command -v "qemu-$foreign-static" >/dev/null; then missing+=(qemu-user-static); fi
	# mmdebstrap refuses a foreign architecture without arch-test to check it can run it.
	if [ -n "$foreign" ] && ! command -v arch-test >/dev/null; then missing+=(arch-test); fi
	# The static iptables (rootfs.sh) is compiled for the image's architecture.
	local host cc=gcc cross=()
	host=$(cross_host)
	if [ -n "$host" ]; then
		cc=$host-gcc
		cross=("gcc-$host" "libc6-dev-$ARCH-cross")
	fi
	command -v "$cc" >/dev/null || missing+=("$cc")
	if [ ${#missing[@]} -gt 0 ]; then
		echo "build.sh: installing build tools: ${missing[*]}" >&2
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap squashfs-tools cpio zstd xz-utils \
			qemu-user-static binfmt-support arch-test curl make gcc libc6-dev pkg-config binutils "${cross[@]}" >/dev/null
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
# shellcheck source=images/wslroot.sh
. "$HERE/wslroot.sh"
# shellcheck source=images/efiboot.sh
. "$HERE/efiboot.sh"
# shellcheck source=images/kubelayer.sh
. "$HERE/kubelayer.sh"
# shellcheck source=images/enginelayer.sh
. "$HERE/enginelayer.sh"

sha() { sha256sum "$@" | cut -c1-64; }

ROOT_KEY=$(cat "$HERE/rootfs.sh" "$HERE"/helpers/*.c "$HERE/packages.list" "$HERE/modules.list" "$HERE/prune.list" "$HERE/prune-minimal.list" <(echo "$ARCH $VARIANT $SUITE $SOURCE_DATE_EPOCH") | sha | cut -c1-16)
ROOT_DIR=$CACHE/rootfs-$ARCH-$VARIANT-$ROOT_KEY
if [ -n "$QUERY" ]; then
	if [ "$KUBE" = build ]; then kube_cached; else [ -f "$ROOT_DIR/root.squashfs.zst" ] && { [ -n "$PACKAGED_ENGINE" ] || "$HERE/enginebuild.sh" --is-cached "$ARCH"; }; fi
	exit
fi

build_initrd() {
	local dir
	dir=$(mktemp -d)
	mkdir -p "$dir/modules" "$dir/dev" "$dir/proc" "$dir/sys" "$dir/newroot"
	cp "$ROOT_DIR/modules/"* "$dir/modules/"
	install -m 0755 "$AGENT" "$dir/init"
	find "$dir" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
	# A plain cpio: the kernel copies it instead of decompressing it under emulation.
	(cd "$dir" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc --reproducible -R 0:0) >"$OUT/.initrd.img"
	pack "$OUT/.initrd.img"
	mv -f "$OUT/.initrd.img.zst" "$OUT/initrd.img.zst"
	rm -rf "$dir"
}

# The kernel command line the image boots with (the host adds panic=-1). Only the security
# modules the image has a use for start: it holds no AppArmor, TOMOYO or IPE policy, and
# their setup cost ~2 s of a boot under emulation. The crypto self-tests check the same
# kernel code at every boot; with the SP800-108 KDF test and the jitter entropy source
# (seeds the DRBG in FIPS mode only), which run regardless, they took ~0.4 s of the
# kernel's start (initcall_debug: 97, 191 and 111 ms). Nor does the image use what these
# set up: the built-in X.509 keys (module signatures are not checked; see rootfs.sh), the
# "encrypted" key type, BLAKE2s's self-test and SIMD switch (the generic code serves the
# RNG), BPF's TCP congestion-control kfuncs and its test struct_ops (31, 12, 6, 11 and
# 5 ms of a boot's single-threaded kernel init).
KERNEL_ARGS="console=$CONSOLE quiet lsm=landlock,yama,bpf cryptomgr.notests initcall_blacklist=crypto_kdf108_init,jent_mod_init,load_system_certificate_list,init_encrypted,blake2s_mod_init,bpf_tcp_ca_kfunc_init,bpf_dummy_struct_ops_init"

# manifest_entry ROLE FILE prints FILE's manifest entry; a packed FILE.zst also says what
# it unpacks to.
manifest_entry() {
	local role=$1 f=$2
	if [ -f "$OUT/$f.zst" ]; then
		printf '{"role": "%s", "name": "%s", "size": %d, "sha256": "%s",\n      "unpack": {"format": "zstd", "name": "%s", "size": %d, "sha256": "%s"}}' \
			"$role" "$f.zst" "$(stat -c %s "$OUT/$f.zst")" "$(sha "$OUT/$f.zst")" \
			"$f" "$(zstd -dc --long=27 "$OUT/$f.zst" | wc -c)" "$(zstd -dc --long=27 "$OUT/$f.zst" | sha)"
	else
		printf '{"role": "%s", "name": "%s", "size": %d, "sha256": "%s"}' "$role" "$f" "$(stat -c %s "$OUT/$f")" "$(sha "$OUT/$f")"
	fi
}

write_manifest() {
	{
		printf '{\n  "schemaVersion": 1,\n  "name": "skiff-guest",\n  "version": "%s",\n  "arch": "%s",\n  "variant": "%s",\n' \
			"$SUITE-$ROOT_KEY-$(sha "$OUT/initrd.img.zst" | cut -c1-8)" "$ARCH" "$VARIANT"
		printf '  "kernelVersion": "%s",\n  "kernelCmdline": "%s",\n  "files": [\n' "$(cat "$ROOT_DIR/kernel.version")" "$KERNEL_ARGS"
		printf '    %s,\n    %s,\n    %s\n' "$(manifest_entry kernel "$KERNEL_NAME")" "$(manifest_entry initrd initrd.img)" "$(manifest_entry root root.squashfs)"
		for e in $(engines); do printf '    ,%s\n' "$(manifest_entry "engine-$e" "engine-$e.squashfs")"; done
		wsl_manifest_line
		efiboot_manifest_line
		kube_manifest_line
		printf '  ]\n}\n'
	} >"$OUT/manifest.json"
}

mkdir -p "$CACHE" "$OUT"
if [ -f "$ROOT_DIR/root.squashfs.zst" ]; then
	echo "build.sh: rootfs $ARCH/$VARIANT is cached ($ROOT_KEY), skipping mmdebstrap" >&2
else
	build_rootfs
fi
# Each output is replaced by a new file, never rewritten in place: something may still
# hold the old one open or linked.
# Unpacked files of older builds go: only what the manifest lists is the image.
rm -f "$OUT/root.squashfs" "$OUT/initrd.img" "$OUT"/engine-*.squashfs "$OUT"/engine-*.squashfs.zst
for f in "$KERNEL_NAME" packages.lock trim-report.txt dropped-packages.txt root.squashfs.zst; do
	[ -f "$ROOT_DIR/$f" ] || continue
	cp "$ROOT_DIR/$f" "$OUT/.$f.tmp" && mv -f "$OUT/.$f.tmp" "$OUT/$f"
done
# The default Docker engine: built from source (or taken from its cache) unless a
# directory or Debian's was asked for.
if [ -z "$PACKAGED_ENGINE" ] && [ -z "${ENGINE_BIN[docker]:-}" ] && engines | grep -qx docker; then
	ENGINE_BIN[docker]=$("$HERE/enginebuild.sh" "$ARCH")
fi
for e in $(engines); do engine_layer "$e"; done
build_initrd
build_wsl_rootfs
build_efiboot
kube_layer
write_manifest
for e in $(engines); do
	total=$(stat -c %s "$OUT/$KERNEL_NAME" "$OUT/initrd.img.zst" "$OUT/root.squashfs.zst" "$OUT/engine-$e.squashfs.zst" | awk "{s+=\$1} END {print s}")
	echo "build.sh: $ARCH/$VARIANT image in $OUT: kernel+initrd+root+engine-$e = $total bytes, $((total / 1048576)) MiB compressed (the download of a $e machine)" >&2
done
