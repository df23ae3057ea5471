# The rootfs stage of the guest image: everything that decides the root filesystem's
# content. build.sh hashes this file with the package and prune lists to key its cache,
# so a change here (and only here) rebuilds the slow stage. Sourced by build.sh.

# Fixed so that two builds of one recipe produce the same bytes (file times, squashfs and
# cpio headers).
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1735689600}

# package_lines prints "NAME LAYER" for each package of the recipe for ARCH: LAYER is the
# engine whose layer holds it ("@docker" in packages.list), or base.
package_lines() {
	sed -e 's/#.*//' "$HERE/packages.list" | awk -v a="$ARCH" '
		NF == 0 {next}
		{
			layer = "base"; ok = 1
			for (i = 2; i <= NF; i++) if ($i ~ /^\[/) ok = ok && $i == "[" a "]"; else if ($i ~ /^@/) layer = substr($i, 2)
			if (ok) print $1, layer
		}'
	if [ "$VARIANT" = systemd ]; then echo systemd-sysv base; fi
}

packages() { package_lines | cut -d' ' -f1; }

# engines prints the engines that have a layer.
engines() { package_lines | awk '$2 != "base" {print $2}' | LC_ALL=C sort -u; }


build_rootfs() {
	need_tools
	# global: the EXIT trap needs it after this function returns
	tmp=$(mktemp -d "$CACHE/.build-XXXXXX")
	trap 'if [ -n "${SKIFF_IMAGE_KEEP_FAILED:-}" ]; then echo "build.sh: kept $tmp" >&2; else rm -rf "$tmp"; fi' EXIT
	local rootfs=$tmp/rootfs
	echo "build.sh: mmdebstrap $SUITE/$ARCH ($VARIANT) into $rootfs" >&2
	mmdebstrap --variant=essential --arch="$ARCH" --mode=root --skip=cleanup/apt/lists \
		--aptopt='APT::Install-Recommends "false"' \
		--dpkgopt='path-exclude=/usr/share/man/*' \
		--dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' \
		--dpkgopt='path-exclude=/usr/share/info/*' \
		--essential-hook="BUILD_DIVERSIONS='$BUILD_DIVERSIONS'; $(declare -f divert_slow_scripts); divert_slow_scripts \"\$1\"" \
		--include="$(packages | paste -sd,)" \
		"$SUITE" "$rootfs" "$MIRROR" >"$tmp/mmdebstrap.log" 2>&1 || {
		tail -30 "$tmp/mmdebstrap.log" >&2
		exit 1
	}

	restore_slow_scripts "$rootfs"

	# The host's dpkg-query reads the root's database: no emulated process per query.
	dpkg-query --admindir="$rootfs/var/lib/dpkg" -W -f='${Package} ${Version} ${Architecture}\n' | LC_ALL=C sort >"$tmp/packages.lock"
	dropped_packages "$rootfs" >"$tmp/dropped-packages.txt"

	# The kernel leaves the rootfs: the VMM loads it directly (no bootloader).
	local kver
	kver=$(basename "$(ls -d "$rootfs"/usr/lib/modules/*)")
	install_kernel "$rootfs/boot/vmlinuz-$kver" "$tmp/$KERNEL_NAME"
	cp "$rootfs/boot/config-$kver" "$tmp/kernel.config"

	configure_rootfs "$rootfs"
	static_iptables "$rootfs"
	helpers "$rootfs"

	# Prune, recording what each entry saved.
	: >"$tmp/trim-report.txt"
	local lists=("$HERE/prune.list")
	[ "$VARIANT" = minimal ] && lists+=("$HERE/prune-minimal.list")
	sed -e 's/#.*//' "${lists[@]}" | while read -r pat; do
		[ -n "$pat" ] || continue
		# shellcheck disable=SC2086
		local bytes
		bytes=$(cd "$rootfs" && { du -scb $pat 2>/dev/null || true; } | tail -1 | cut -f1)
		(cd "$rootfs" && rm -rf $pat)
		printf '%12s  %s\n' "${bytes:-0}" "$pat" >>"$tmp/trim-report.txt"
	done
	# Modules uncompressed: the kernel's xz decompression of each one it loads cost seconds
	# under emulation, and the root's own compression keeps the image about the same size.
	find "$rootfs/usr/lib/modules" -name '*.ko.xz' -exec xz -d {} +
	if [ -n "$(find "$rootfs/usr/lib/modules" -name '*.ko.*' -print -quit)" ]; then
		echo "build.sh: kernel modules compressed other than with xz; rootfs.sh only unpacks .ko.xz" >&2
		exit 1
	fi
	unsign_modules "$rootfs/usr/lib/modules"
	chroot "$rootfs" depmod -a "$kver"
	keep_modules "$rootfs/usr/lib/modules/$kver" >>"$tmp/trim-report.txt"
	chroot "$rootfs" depmod -a "$kver"
	if grep -q '^alias binfmt-' "$rootfs/usr/lib/modules/$kver/modules.alias"; then
		echo "build.sh: a module in the image provides a binfmt-* alias, which helpers/modprobe-filter.c answers 'none' for" >&2
		exit 1
	fi

	stage1_modules "$rootfs" "$kver" "$tmp/modules"

	split_engines "$rootfs" "$tmp" >>"$tmp/trim-report.txt"
	runc_is_crun "$tmp/engine-docker" >>"$tmp/trim-report.txt"
	# dpkg's file lists served the split; nothing in a running machine reads them.
	printf '%12s  %s\n' "$(du -scb "$rootfs"/var/lib/dpkg/info/* | tail -1 | cut -f1)" "var/lib/dpkg/info/*" >>"$tmp/trim-report.txt"
	rm -rf "$rootfs"/var/lib/dpkg/info/*
	check_libraries "$rootfs" "$tmp"

	make_squashfs "$rootfs" "$tmp/root.squashfs"
	pack "$tmp/root.squashfs"
	local e
	for e in $(engines); do
		make_squashfs "$tmp/engine-$e" "$tmp/engine-$e.squashfs"
		pack "$tmp/engine-$e.squashfs"
		rm -rf "$tmp/engine-$e"
	done
	echo "$kver" >"$tmp/kernel.version"
	rm -rf "$rootfs" "$tmp/mmdebstrap.log"
	trap - EXIT
	mv "$tmp" "$ROOT_DIR"
}

# keep_modules DIR drops every module under DIR (a kernel's module tree, depmod run) that
# modules.list does not name or a named one does not need, and prints what that saved by
# directory, in trim-report.txt's form.
keep_modules() {
	local d=$1 keep
	keep=$(mktemp)
	(
		cd "$d"
		shopt -s nullglob
		sed -e 's/#.*//' "$HERE/modules.list" | while read -r p; do
			[ -n "$p" ] || continue
			# shellcheck disable=SC2206
			local m=(kernel/$p)
			[ ${#m[@]} -gt 0 ] || echo "build.sh: modules.list: $p matches no module of $(basename "$d")" >&2
			printf '%s\n' "${m[@]}"
		done
	) | awk -F: 'NR == FNR {want[$1] = 1; next} $1 in want {print $1; n = split($2, dep, " "); for (i = 1; i <= n; i++) print dep[i]}' - "$d/modules.dep" |
		LC_ALL=C sort -u >"$keep"
	(cd "$d" && find kernel -name '*.ko' | LC_ALL=C sort | comm -23 - "$keep" | tr '\n' '\0' | xargs -0r du -b) |
		awk '{n = split($2, p, "/"); k = p[1] "/" p[2] (n > 3 ? "/" p[3] : ""); s[k] += $1}
			END {for (k in s) printf "%12d  usr/lib/modules/*/%s (not in modules.list)\n", s[k], k}' | sort -rn
	(cd "$d" && find kernel -name '*.ko' | LC_ALL=C sort | comm -23 - "$keep" | tr '\n' '\0' | xargs -0r rm -f)
	find "$d/kernel" -depth -type d -empty -delete
	rm -f "$keep"
}

# split_engines ROOT OUT moves each engine's own files from ROOT to OUT/engine-ENGINE: the
# files of the packages packages.list gives that engine and of the packages only they
# need (dpkg's lists); what the base or another engine also needs stays in ROOT. The guest
# stacks its engine's layer over ROOT (images/guestinit/stage1_linux.go), so every path
# stays where the package put it. ROOT keeps a note that it wants a layer. Prints what
# each layer took, in trim-report.txt's form.
split_engines() {
	local r=$1 out=$2 admin=$1/var/lib/dpkg e o
	# shellcheck disable=SC2046
	pkg_closure "$admin" $(dpkg-query --admindir="$admin" -W -f='${Package} ${Essential} ${Priority}\n' | awk '$2 == "yes" || $3 == "required" {print $1}') \
		$(package_lines | awk '$2 == "base" {print $1}') >"$out/base.pkgs"
	for e in $(engines); do
		# shellcheck disable=SC2046
		pkg_closure "$admin" $(package_lines | awk -v e="$e" '$2 == e {print $1}') >"$out/$e.pkgs"
	done
	for e in $(engines); do
		{
			cat "$out/base.pkgs"
			for o in $(engines); do [ "$o" = "$e" ] || cat "$out/$o.pkgs"; done
		} | LC_ALL=C sort -u >"$out/others.pkgs"
		LC_ALL=C comm -23 "$out/$e.pkgs" "$out/others.pkgs" >"$out/$e.only"
		# shellcheck disable=SC2046
		pkg_files "$admin" $(cat "$out/others.pkgs") >"$out/others.files"
		# shellcheck disable=SC2046
		{ pkg_files "$admin" $(cat "$out/$e.only"); engine_extra_files "$e"; } | LC_ALL=C sort -u | LC_ALL=C comm -23 - "$out/others.files" >"$out/$e.files"
		split_layer "$r" "$out/engine-$e" "$out/$e.files"
		printf '%12s  %s\n' "$(du -sb "$out/engine-$e" | cut -f1)" "moved to the engine-$e layer: $(paste -sd' ' "$out/$e.only")"
		rm -f "$out/$e.files" "$out/others.pkgs" "$out/others.files"
	done
	mkdir -p "$r/usr/lib/skiff"
	echo "# This root is a base: the guest stacks an engine layer over it (images/rootfs.sh split_engines)." >"$r/usr/lib/skiff/engine-layer"
	rm -f "$out"/*.pkgs "$out"/*.only
}

# engine_extra_files ENGINE prints what the recipe itself adds for ENGINE alone.
engine_extra_files() {
	case $1 in
	docker) echo /etc/docker/daemon.json ;;
	esac
}

# pkg_closure ADMINDIR PACKAGE... prints the installed packages the PACKAGEs need, them
# included (Depends and Pre-Depends; an alternative is met by its first installed
# package, or one that provides it), sorted.
pkg_closure() {
	local admin=$1
	shift
	dpkg-query --admindir="$admin" -W -f='${db:Status-Abbrev}\t${Package}\t${Provides}\t${Pre-Depends}, ${Depends}\n' |
		awk -F'\t' -v roots="$*" '
		$1 !~ /^ii/ {next}
		{
			pkg[$2] = 1; dep[$2] = $4
			n = split($3, pv, ",")
			for (i = 1; i <= n; i++) { p = pv[i]; sub(/\(.*/, "", p); gsub(/[ \t]/, "", p); if (p != "" && !(p in prov)) prov[p] = $2 }
		}
		function resolve(name) { sub(/:.*/, "", name); if (name in pkg) return name; if (name in prov) return prov[name]; return "" }
		function visit(p,   groups, n, i, alts, m, j, a, r) {
			if (p in seen) return
			seen[p] = 1
			n = split(dep[p], groups, ",")
			for (i = 1; i <= n; i++) {
				m = split(groups[i], alts, "|")
				for (j = 1; j <= m; j++) {
					a = alts[j]; sub(/\(.*/, "", a); sub(/\[.*/, "", a); gsub(/[ \t]/, "", a)
					if (a == "") continue
					r = resolve(a)
					if (r != "") { visit(r); break }
				}
			}
		}
		END {
			n = split(roots, rs, " ")
			for (i = 1; i <= n; i++) {
				r = resolve(rs[i])
				if (r == "") { print "build.sh: package " rs[i] " is not installed" > "/dev/stderr"; exit 1 }
				visit(r)
			}
			for (p in seen) print p
		}' | LC_ALL=C sort
}

# pkg_files ADMINDIR PACKAGE... prints the paths the packages installed (dpkg -L), sorted.
pkg_files() {
	local admin=$1 p f
	shift
	for p in "$@"; do
		for f in "$admin/info/$p.list" "$admin/info/$p:"*.list; do
			if [ -f "$f" ]; then cat "$f"; fi
		done
	done | LC_ALL=C sort -u
}

# split_layer ROOT LAYER PATHS moves what the file PATHS lists (absolute paths, one a
# line) from ROOT to LAYER: files and links go, directories are copied with their modes
# and leave ROOT only when that leaves them empty.
split_layer() {
	local r=$1 l=$2 list
	list=$(realpath "$3")
	mkdir -p "$l"
	(cd "$r" && while IFS= read -r p; do
		p=${p#/}
		if [ -n "$p" ] && { [ -e "$p" ] || [ -L "$p" ]; }; then printf '%s\0' "$p"; fi
	done <"$list") | tar -C "$r" --null --no-recursion -T - -cf - | tar -C "$l" -xpf -
	(cd "$l" && find . ! -type d -print0) | (cd "$r" && xargs -0r rm -f)
	(cd "$l" && find . -mindepth 1 -depth -type d -print0) | (cd "$r" && xargs -0r rmdir --ignore-fail-on-non-empty)
}

# check_libraries ROOT OUT fails the build when an ELF file of the base, or of the base
# with an engine's layer over it, names a library (DT_NEEDED) that is not there: what the
# prune lists and the split may not take.
check_libraries() {
	local r=$1 out=$2 e miss
	miss=$({
		elf_missing "$r"
		for e in $(engines); do elf_missing "$r" "$out/engine-$e"; done
	} | LC_ALL=C sort -u)
	if [ -n "$miss" ]; then
		echo "build.sh: programs in the image need libraries it no longer has (prune lists, engine layers):" >&2
		echo "$miss" | head -20 >&2
		exit 1
	fi
}

# elf_missing TREE... prints "FILE: SONAME" for each library an ELF file in the trees names
# (DT_NEEDED) that none of them holds, looked up by name under usr/lib and lib.
elf_missing() {
	local t
	{
		for t in "$@"; do
			find "$t/usr/lib" "$t/lib" -name '*.so*' \( -type f -o -type l \) -printf 'have %f\n' 2>/dev/null || true
		done
		for t in "$@"; do
			# /dev/null: readelf names each file only when it is given more than one.
			find "$t" -type f -size +1k -print0 | xargs -0r readelf -d /dev/null 2>/dev/null |
				awk -v t="$t/" '/^File: / {f = $2; sub("^" t, "/", f)} /\(NEEDED\)/ {n = $NF; gsub(/[][]/, "", n); print "need " f " " n}' || true
		done
	} | awk '$1 == "have" {h[$2] = 1; next} {w[$2 ": " $3] = $3} END {for (k in w) if (!(w[k] in h)) print k}' | LC_ALL=C sort
}

# Package scripts that produce nothing the image keeps, and that take minutes when a
# foreign arch runs them under qemu-user: the kernel's initramfs hook (the agent is the
# initrd), udev's hwdb compile (pruned) and the kernel's depmod (rerun after pruning).
# They are diverted to true for the install and restored afterwards. Placeholder host
# keys stop openssh-server from making keys (RSA is slow emulated) that the image drops.
BUILD_DIVERSIONS="/usr/sbin/update-initramfs /usr/bin/systemd-hwdb /usr/sbin/depmod"

divert_slow_scripts() {
	local r=$1 p
	mkdir -p "$r/usr/sbin" "$r/usr/bin"
	for p in $BUILD_DIVERSIONS; do
		dpkg-divert --root="$r" --local --rename --divert "$p.skiff-build" --add "$p" >/dev/null
		ln -sf /bin/true "$r$p"
	done
	mkdir -p "$r/etc/ssh"
	for p in rsa ecdsa ed25519; do : >"$r/etc/ssh/ssh_host_${p}_key"; done
}

restore_slow_scripts() {
	local r=$1 p
	for p in $BUILD_DIVERSIONS; do
		rm -f "$r$p"
		dpkg-divert --root="$r" --local --rename --divert "$p.skiff-build" --remove "$p" >/dev/null
	done
}

# The VMM loads the kernel directly. arm64 needs the plain Image (vz takes nothing else):
# Debian ships it uncompressed behind an EFI stub header; other builds gzip it.
install_kernel() {
	local src=$1 dst=$2
	if [ "$ARCH" = arm64 ] && gzip -t "$src" 2>/dev/null; then
		zcat "$src" >"$dst"
	else
		cp "$src" "$dst"
	fi
	if [ "$ARCH" = arm64 ] && [ "$(dd if="$dst" bs=1 skip=56 count=4 2>/dev/null)" != ARMd ]; then
		echo "build.sh: $src is not an arm64 Image (no ARMd magic at byte 56)" >&2
		exit 1
	fi
}

# The root filesystem image from a tree. It is a pure function of the tree: mksquashfs
# sorts entries itself, and with SOURCE_DATE_EPOCH (exported by build.sh) it clamps every
# timestamp and fixes the superblock's; images/repro_test.go checks that.
# Uncompressed: under emulation the guest's decompression of each block it touches cost
# ~2 s of every cold boot (13.2 s vs 15.2 s medians, 5 interleaved boots). The download
# is compressed whole instead (pack), and the install unpacks it once.
make_squashfs() {
	mksquashfs "$1" "$2" -noappend -noI -noD -noF -noX -b 1M -quiet -no-progress >/dev/null
}

# pack FILE replaces FILE with FILE.zst, the form the image is downloaded in. zstd's
# output does not depend on its thread count, so -T0 keeps the build reproducible; the
# long window finds the repeats across a whole root (101 MB vs 120 MB for a zstd squashfs).
pack() {
	zstd -q -19 --long=27 -T0 --rm -f -o "$1.zst" "$1"
}

# Lists the packages that the included ones recommend but the image leaves out, with the
# installed size each would have cost: the record of what dropping them saved.
dropped_packages() {
	local r=$1
	# The essential variant has no apt inside; the host's apt reads the root's lists.
	local apt=(apt-cache -o "Dir::State::Lists=$r/var/lib/apt/lists" -o "Dir::State::Status=$r/var/lib/dpkg/status"
		-o "Dir::Etc::SourceList=$r/etc/apt/sources.list" -o "Dir::Etc::SourceParts=$r/etc/apt/sources.list.d"
		-o "Dir::Cache=$r/var/cache/apt" -o "APT::Architecture=$ARCH")
	printf '%-32s %10s  %s\n' "# package (not installed)" "KiB saved" "recommended by"
	packages | while read -r p; do
		{ "${apt[@]}" depends --no-pre-depends --no-depends --no-suggests --no-conflicts \
			--no-breaks --no-replaces --no-enhances "$p" 2>/dev/null || true; } |
			awk '/Recommends:/ {gsub(/[<>]/, "", $2); print $2}' | while read -r rec; do
			dpkg-query --admindir="$r/var/lib/dpkg" -W -f='${Status}' "$rec" 2>/dev/null | grep -q "install ok installed" && continue
			size=$({ "${apt[@]}" show "$rec" 2>/dev/null || true; } | awk '/^Installed-Size:/ {print $2; exit}')
			printf '%-32s %10s  %s\n' "$rec" "${size:-?}" "$p"
		done
	done | sort -u -k1,1
}

# Settings baked into the read-only root. Per-machine state (keys, hostname, mounts) comes
# from the seed disk at boot, so the image holds no secrets and every machine can share it.
configure_rootfs() {
	local r=$1
	rm -f "$r"/etc/ssh/ssh_host_* "$r/etc/machine-id"
	: >"$r/etc/machine-id"
	mkdir -p "$r/etc/ssh/sshd_config.d" "$r/etc/docker" "$r/etc/containers" "$r/etc/containerd"
	cat >"$r/etc/ssh/sshd_config.d/skiff.conf" <<-'EOF'
		HostKey /run/skiff/ssh_host_ed25519_key
		AuthorizedKeysFile /run/skiff/authorized_keys
		PasswordAuthentication no
		KbdInteractiveAuthentication no
		PermitRootLogin prohibit-password
		UsePAM no
		UseDNS no
		PrintMotd no
		AcceptEnv LANG LC_* TERM
	EOF
	# dockerd is containerd's only client: Kubernetes' CRI and the snapshotters dockerd's
	# overlay2 never uses cost seconds of emulated CPU at every start.
	cat >"$r/etc/containerd/config.toml" <<-'EOF'
		version = 2
		disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
		  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
		  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.blockfile",
		  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
		  "io.containerd.nri.v1.nri"]

		[plugins."io.containerd.internal.v1.opt"]
		  path = "/var/lib/containerd/opt"
	EOF
	# crun by its bare name: dockerd's probes of it then reach the helper first on its PATH
	# (helpers), and the shims find /usr/bin/crun on containerd's.
	cat >"$r/etc/docker/daemon.json" <<-'EOF'
		{
		  "default-runtime": "crun",
		  "runtimes": {"crun": {"path": "crun"}},
		  "features": {"buildkit": true},
		  "log-opts": {"max-size": "10m", "max-file": "3"}
		}
	EOF
	# The root is read-only; the agent mounts the data disk at /var/lib/skiff and binds these.
	mkdir -p "$r/var/lib/skiff" "$r/var/lib/docker" "$r/var/lib/containers" "$r/mnt/skiff"
	echo skiff >"$r/etc/hostname"
	# The engine runs dozens of iptables commands at start, each a process exec that costs
	# ~100ms under emulation; the legacy backend does the same work in half the time.
	chroot "$r" update-alternatives --quiet --set iptables /usr/sbin/iptables-legacy
	chroot "$r" update-alternatives --quiet --set ip6tables /usr/sbin/ip6tables-legacy
	if [ "$VARIANT" = systemd ]; then
		# The comparison variant: the same agent as a plain service under systemd.
		mkdir -p "$r/etc/systemd/system/multi-user.target.wants"
		cat >"$r/etc/systemd/system/skiff-agent.service" <<-'EOF'
			[Unit]
			Description=Skiff guest agent
			After=local-fs.target
			[Service]
			ExecStart=/usr/sbin/skiff-agent service
			Restart=always
			[Install]
			WantedBy=multi-user.target
		EOF
		ln -sf ../skiff-agent.service "$r/etc/systemd/system/multi-user.target.wants/skiff-agent.service"
		# The agent starts the engine and sshd itself, as in the minimal variant, so the
		# comparison measures the init system and nothing else.
		for u in docker.service docker.socket containerd.service ssh.service ssh.socket; do
			ln -sf /dev/null "$r/etc/systemd/system/$u"
		done
	fi
}

# dockerd runs ~100 iptables commands at every start. Under emulation an exec of Debian's
# dynamically linked iptables costs ~120 ms, most of it the dynamic loader binding
# libxtables and one library per match and target; the same source linked statically costs
# ~35 ms. So the legacy multi-binary (what the iptables alternative points at) is rebuilt
# from the upstream source of the installed version, pinned by digest, with every
# extension built in. The nft multi-binary stays Debian's.
IPTABLES_SRC_VERSION=1.8.11
IPTABLES_SRC_SHA256=d87303d55ef8c92bcad4dd3f978b26d272013642b029425775f5bad1009fe7b2

static_iptables() {
	local r=$1 have src f host
	have=$(dpkg-query --admindir="$r/var/lib/dpkg" -W -f='${Version}' iptables)
	if [ "${have%%-*}" != "$IPTABLES_SRC_VERSION" ]; then
		echo "build.sh: the image's iptables is $have but rootfs.sh pins the source of $IPTABLES_SRC_VERSION: update IPTABLES_SRC_VERSION and IPTABLES_SRC_SHA256" >&2
		exit 1
	fi
	f=iptables_$IPTABLES_SRC_VERSION.orig.tar.xz
	curl -fsS --retry 3 -o "$tmp/$f" "$MIRROR/pool/main/i/iptables/$f" || {
		echo "build.sh: cannot download $MIRROR/pool/main/i/iptables/$f" >&2
		exit 1
	}
	if ! echo "$IPTABLES_SRC_SHA256  $tmp/$f" | sha256sum -c --quiet >/dev/null 2>&1; then
		echo "build.sh: $f: sha256 $(sha256sum "$tmp/$f" | cut -c1-64), expected $IPTABLES_SRC_SHA256" >&2
		exit 1
	fi
	src=$tmp/iptables-src
	mkdir -p "$src"
	tar -C "$src" --strip-components=1 -xf "$tmp/$f"
	host=$(cross_host)
	# A fixed prefix map keeps build paths out of the binary, and the optional libraries
	# are off so that what the build host has installed cannot change the result.
	(cd "$src" && ./configure ${host:+--host=$host} --disable-nftables --disable-libnfnetlink --disable-connlabel \
		--enable-static --disable-shared \
		CFLAGS="-O2 -ffile-prefix-map=$src=." &&
		make -j"$(nproc)" LDFLAGS=-all-static) >"$tmp/iptables-build.log" 2>&1 || {
		tail -20 "$tmp/iptables-build.log" >&2
		exit 1
	}
	"${host:+$host-}strip" -o "$r/usr/sbin/xtables-legacy-multi" "$src/iptables/xtables-legacy-multi"
	chmod 0755 "$r/usr/sbin/xtables-legacy-multi"
	rm -rf "$src" "$tmp/$f" "$tmp/iptables-build.log"
}

# cross_host prints the GNU triple to cross-compile for, empty for a native build.
cross_host() {
	[ "$ARCH" = "$(dpkg --print-architecture)" ] || echo "$(qemu_arch)-linux-gnu"
}

# The agent's static helpers: the kernel's module request helper, which is also dockerd's
# modprobe, and dockerd's crun, also its runc (see helpers/*.c).
helpers() {
	local r=$1 host
	host=$(cross_host)
	mkdir -p "$r/usr/libexec/skiff/dockerd-bin"
	"${host:+$host-}gcc" -static -Os -s -o "$r/usr/libexec/skiff/modprobe-filter" "$HERE/helpers/modprobe-filter.c"
	"${host:+$host-}gcc" -static -Os -s -o "$r/usr/libexec/skiff/dockerd-bin/crun" "$HERE/helpers/runtime-probes.c"
	ln -sf crun "$r/usr/libexec/skiff/dockerd-bin/runc"
	ln -sf ../modprobe-filter "$r/usr/libexec/skiff/dockerd-bin/modprobe"
}

# runc_is_crun LAYER replaces runc's binary in the docker layer LAYER by a link to crun
# (the base's): docker.io and containerd depend on the runc package, so it is installed,
# but crun runs the containers (daemon.json's default runtime; ~0.6 s less per container
# start under emulation). The link serves what asks for runc by name: dockerd's stock
# "runc" runtime, BuildKit's RUN steps and a Kubernetes machine's CRI (kubelayer.sh).
# Prints what that saved, in trim-report.txt's form.
runc_is_crun() {
	local l=$1
	[ -x "$l/usr/sbin/runc" ] && [ ! -L "$l/usr/sbin/runc" ] || { echo "build.sh: no runc binary in $l to replace" >&2; exit 1; }
	printf '%12s  %s\n' "$(stat -c %s "$l/usr/sbin/runc")" "usr/sbin/runc (engine-docker layer; now a link to crun)"
	rm "$l/usr/sbin/runc"
	ln -s /usr/bin/crun "$l/usr/sbin/runc"
}

# Resolves the modules stage 1 loads, in load order (dependencies first). Each line of
# load.list is a module followed by the modules it needs, so that stage 1 skips what cannot
# load here without asking the kernel: a request "hv_vmbus/hv_storvsc" makes hv_storvsc
# and everything it pulls in need hv_vmbus, which loads only on Hyper-V. Lines before "=="
# load one at a time before the others (their init rewrites hot kernel code: static keys);
# a line "--" ends what mounting the root needs, and stage 1 loads the rest while it mounts
# the root. The root's modules are uncompressed by then (build_rootfs), and the initrd is compressed as a whole.
# Order matters for the gate: a module first reached under "hv_vmbus/..." needs hv_vmbus,
# so what other buses share (scsi_mod under virtio_scsi, vsock) is named before it.
stage1_modules() {
	local r=$1 kver=$2 dst=$3
	local dep=$r/usr/lib/modules/$kver/modules.dep
	mkdir -p "$dst"
	local -A seen=()
	local gate=
	: >"$dst/load.list"
	visit() {
		local path
		# A module's file may spell the name's underscores as dashes (crc32c-intel.ko).
		path=$(awk -F: -v m="/${1//_/[-_]}.ko" '$1 ~ m"$" {print $1; exit}' "$dep")
		if [ -z "$path" ]; then
			# Built in, or not built for this architecture (crc32c_intel on arm64); a module
			# the kernel has (modules.order) that the image dropped is a mistake.
			if grep -q "/${1//_/[-_]}.ko\$" "$r/usr/lib/modules/$kver/modules.order"; then
				echo "build.sh: stage 1 loads $1, which modules.list leaves out of the image" >&2
				exit 1
			fi
			return 0
		fi
		[ -z "${seen[$path]:-}" ] || return 0
		seen[$path]=1
		local d deps=()
		for d in $(awk -F: -v p="$path" '$1==p {print $2}' "$dep"); do
			d=$(basename "$d" .ko)
			d=${d//-/_}
			visit "$d"
			deps+=("$d.ko")
		done
		local name
		name=$(basename "$path" .ko)
		name=${name//-/_}
		[ -n "$gate" ] && [ "$gate" != "$name" ] && deps+=("$gate.ko")
		cp "$r/usr/lib/modules/$kver/$path" "$dst/$name.ko"
		echo "$name.ko${deps[*]:+ ${deps[*]}}" >>"$dst/load.list"
	}
	local m
	for m in virtio_balloon == virtio_blk virtio_scsi sd_mod hv_vmbus hv_vmbus/hv_storvsc squashfs overlay -- ext4 crc32c_intel crc32c_generic virtio_net hv_vmbus/hv_netvsc virtio_rng vsock vmw_vsock_virtio_transport hv_vmbus/hv_sock; do
		case "$m" in
		--|==) echo "$m" >>"$dst/load.list" ;;
		*/*) gate=${m%/*} visit "${m#*/}" ;;
		*) visit "$m" ;;
		esac
	done
}

# unsign_modules DIR drops the signature appended to every module under DIR. The kernel
# does not enforce signatures here (every backend boots without Secure Boot; Hyper-V's is
# switched off), so it only checked them: hashing each module under emulation cost ~0.1 ms
# per KiB, ~1 s of CPU for the ~9 MiB a boot loads. What vouches for the modules is the
# root's digest, which the host verifies. It edits only the trailer, so any architecture.
unsign_modules() {
	find "$1" -name '*.ko' -exec perl -e '
		for my $f (@ARGV) {
			open(my $fh, "+<", $f) or die "$f: $!";
			my $size = -s $fh;
			next if $size < 40;
			seek($fh, $size - 32, 0);
			read($fh, my $t, 32) == 32 or die "$f: short read";
			next unless substr($t, 4) eq "~Module signature appended~\n";
			my $siglen = unpack("N", substr($t, 0, 4));
			truncate($fh, $size - 40 - $siglen) or die "$f: truncate: $!";
			close($fh);
		}' {} +
}
