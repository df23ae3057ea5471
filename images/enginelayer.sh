# The engine layers in the fast stage, sourced by build.sh: each engine's layer comes from
# the cached root (rootfs.sh split_engines), or with locally built programs in it.

# engine_layer ENGINE puts ENGINE's layer in OUT: the cached root's, or with
# --engine-bin's programs in it. Each file in that directory replaces usr/sbin/NAME or
# usr/bin/NAME of the layer, or goes to usr/bin when the layer has no NAME. The result is
# cached under CACHE/engine-ENGINE-ARCH-KEY, keyed by the root's key and the programs.
engine_layer() {
	local e=$1 bin=${ENGINE_BIN[$1]:-} src
	src=$ROOT_DIR/engine-$e.squashfs.zst
	if [ -n "$bin" ]; then
		local key dir tmp f n dst
		key=$({ (cd "$bin" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum); echo "$ROOT_KEY"; } | sha256sum | cut -c1-16)
		dir=$CACHE/engine-$e-$ARCH-$key
		if [ ! -f "$dir/engine-$e.squashfs.zst" ]; then
			echo "build.sh: engine-$e layer with the programs of $bin ($key)" >&2
			tmp=$(mktemp -d "$CACHE/.engine-XXXXXX")
			zstd -q -dc --long=27 "$src" >"$tmp/layer.squashfs"
			unsquashfs -q -n -d "$tmp/layer" "$tmp/layer.squashfs" >/dev/null
			rm "$tmp/layer.squashfs"
			for f in "$bin"/*; do
				[ -f "$f" ] || continue
				n=$(basename "$f") dst=usr/bin
				[ -e "$tmp/layer/usr/sbin/$n" ] && dst=usr/sbin
				mkdir -p "$tmp/layer/$dst"
				rm -f "$tmp/layer/$dst/$n"
				install -m 0755 "$f" "$tmp/layer/$dst/$n"
			done
			find "$tmp/layer" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
			make_squashfs "$tmp/layer" "$tmp/engine-$e.squashfs"
			pack "$tmp/engine-$e.squashfs"
			rm -rf "$tmp/layer" "$dir"
			mv "$tmp" "$dir"
		fi
		src=$dir/engine-$e.squashfs.zst
	fi
	cp "$src" "$OUT/.engine-$e.squashfs.zst.tmp" && mv -f "$OUT/.engine-$e.squashfs.zst.tmp" "$OUT/engine-$e.squashfs.zst"
}
