# The engine layers in the fast stage, sourced by build.sh: each engine's layer comes from
# the cached root (rootfs.sh split_engines), or with locally built programs in it.

# engine_layer ENGINE puts ENGINE's layer in OUT: the cached root's, or with
# --engine-bin's programs in it. Each file in that directory replaces usr/sbin/NAME or
# usr/bin/NAME of the layer, or goes to usr/bin when the layer has no NAME. The directory
# may instead be an engine's as enginebuild.sh makes it: bin/ holds the programs and etc/
# their configuration, whose files go over the root's /etc in the layer. The result is
# cached under CACHE/engine-ENGINE-ARCH-KEY, keyed by the root's key, the directory and
# this file.
engine_layer() {
	local e=$1 bin=${ENGINE_BIN[$1]:-} src etc=
	src=$ROOT_DIR/engine-$e.squashfs.zst
	if [ -n "$bin" ]; then
		local key dir tmp f n dst t
		local -A placed=()
		key=$({ (cd "$bin" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum); echo "$ROOT_KEY"; cat "${BASH_SOURCE[0]}"; } | sha256sum | cut -c1-16)
		if [ -d "$bin/bin" ]; then
			[ -d "$bin/etc" ] && etc=$bin/etc
			bin=$bin/bin
		fi
		dir=$CACHE/engine-$e-$ARCH-$key
		if [ ! -f "$dir/engine-$e.squashfs.zst" ]; then
			echo "build.sh: engine-$e layer with the programs of $bin ($key)" >&2
			tmp=$(mktemp -d "$CACHE/.engine-XXXXXX")
			zstd -q -dc --long=27 "$src" >"$tmp/layer.squashfs"
			unsquashfs -q -n -d "$tmp/layer" "$tmp/layer.squashfs" >/dev/null
			rm "$tmp/layer.squashfs"
			# Programs, then links to them (a multi-call binary's other names,
			# enginebuild.sh), which stay links to where their program went.
			for f in "$bin"/*; do
				[ -f "$f" ] && [ ! -L "$f" ] || continue
				n=$(basename "$f") dst=usr/bin
				[ -e "$tmp/layer/usr/sbin/$n" ] && dst=usr/sbin
				mkdir -p "$tmp/layer/$dst"
				rm -f "$tmp/layer/$dst/$n"
				install -m 0755 "$f" "$tmp/layer/$dst/$n"
				placed[$n]=/$dst/$n
			done
			for f in "$bin"/*; do
				[ -L "$f" ] || continue
				n=$(basename "$f") dst=usr/bin t=$(basename "$(readlink "$f")")
				[ -n "${placed[$t]:-}" ] || { echo "build.sh: $f links to $t, not a program in $bin" >&2; exit 1; }
				[ -e "$tmp/layer/usr/sbin/$n" ] && dst=usr/sbin
				rm -f "$tmp/layer/$dst/$n"
				ln -s "${placed[$t]}" "$tmp/layer/$dst/$n"
			done
			if [ -n "$etc" ]; then
				mkdir -p "$tmp/layer/etc"
				cp -r --no-preserve=mode,ownership "$etc/." "$tmp/layer/etc/"
			fi
			find "$tmp/layer" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
			make_squashfs "$tmp/layer" "$tmp/engine-$e.squashfs"
			# zstd's strongest level, not pack's -19: 0.65 MB less for the docker layer
			# (2.3%), which every docker machine downloads, for ~2 min more of a build
			# that is cached. The window stays 2^27, what images.Install accepts.
			zstd -q --ultra -22 --long=27 -T0 --rm -f -o "$tmp/engine-$e.squashfs.zst" "$tmp/engine-$e.squashfs"
			rm -rf "$tmp/layer" "$dir"
			mv "$tmp" "$dir"
		fi
		# trim-report.txt's line for it: what the layer saves against the packaged one.
		if [ -f "$OUT/trim-report.txt" ]; then
			local was now
			was=$(stat -c %s "$src") now=$(stat -c %s "$dir/engine-$e.squashfs.zst")
			printf '%12s  %s\n' "$((was - now))" "engine-$e layer, packed: $was B with the packaged programs, $now B with $(cd "$bin" && echo *) of $bin${etc:+ and its etc/}" >>"$OUT/trim-report.txt"
		fi
		src=$dir/engine-$e.squashfs.zst
	fi
	cp "$src" "$OUT/.engine-$e.squashfs.zst.tmp" && mv -f "$OUT/.engine-$e.squashfs.zst.tmp" "$OUT/engine-$e.squashfs.zst"
}
