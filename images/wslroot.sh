# The WSL 2 root filesystem: wsl-rootfs.tar, what `wsl.exe --import` unpacks into the
# distro's ext4 disk (vmm/wsl2). It is the cached root's tree (the same bytes as
# root.squashfs, with every engine layer unpacked over it) plus the agent, which on QEMU runs from the initrd and is not in the root.
# Made in the fast stage, since the agent changes with every commit. Sourced by build.sh.

# wsl_conf prints the distro's /etc/wsl.conf. WSL's own init reads it at each start.
#   boot:      no systemd: `skiff-agent boot-wsl` starts the engine itself, as on QEMU.
#   interop:   no Windows programs from the distro and no Windows PATH: the engine's
#              containers have no business starting them.
#   automount: no drives under /mnt and no fstab. The agent mounts, read-only, the one
#              folder that holds the seed (at its /mnt/<letter>/... path, which is how
#              vmm/wsl2 names it) and each share Skiff configures, so those are the only
#              host folders the engine sees.
#   user:      root, which runs the agent (wsl.exe is given -u root as well).
wsl_conf() {
	cat <<-'EOF'
		# Written by Skiff's image build (images/wslroot.sh).
		[boot]
		systemd = false

		[interop]
		enabled = false
		appendWindowsPath = false

		[automount]
		enabled = false
		mountFsTab = false

		[user]
		default = root
	EOF
}

# wsl_tar DIR OUT writes DIR's tree as a tar that is a pure function of the tree: names
# sorted, numeric owners, every mtime SOURCE_DATE_EPOCH, pax headers without the
# process id, access or change times. File capabilities travel as pax xattrs.
wsl_tar() {
	tar -C "$1" -cf "$2" --sort=name --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
		--format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
		--xattrs --xattrs-include=security.capability .
}

# The download is zstd-packed like the root, but at level 12 rather than pack's 19: this
# file is rebuilt at every build (the agent changes). The 445 MB tar on 2 cores (--long=27
# -T0): -9 123.4 MB in 6.5 s, -12 120.1 MB in 17.5 s, -15 118.9 MB in 47.5 s, -16 112.4 MB
# in 191 s, -19 105.8 MB in 376 s (the last two beside other VMs). A release build can
# spend the minutes: SKIFF_WSL_ZSTD_LEVEL=19.
WSL_ZSTD_LEVEL=${SKIFF_WSL_ZSTD_LEVEL:-12}

build_wsl_rootfs() {
	rm -f "$OUT/wsl-rootfs.tar"
	# WSL runs amd64 and arm64 distros; systemd is the comparison variant for QEMU only.
	if [ "$VARIANT" != minimal ]; then
		rm -f "$OUT/wsl-rootfs.tar.zst"
		return 0
	fi
	local dir
	dir=$(mktemp -d "$CACHE/.wsl-XXXXXX")
	zstd -q -dc --long=27 "$ROOT_DIR/root.squashfs.zst" >"$dir/root.squashfs"
	unsquashfs -q -n -d "$dir/root" "$dir/root.squashfs" >/dev/null
	rm "$dir/root.squashfs"
	# WSL attaches no disks: every engine's layer goes into the one tree, and the root no
	# longer asks for a layer.
	local e
	for e in $(engines); do
		zstd -q -dc --long=27 "$OUT/engine-$e.squashfs.zst" >"$dir/engine.squashfs"
		unsquashfs -q -n -f -d "$dir/root" "$dir/engine.squashfs" >/dev/null
		rm "$dir/engine.squashfs"
	done
	rm -f "$dir/root/usr/lib/skiff/engine-layer"
	install -m 0755 "$AGENT" "$dir/root/usr/sbin/skiff-agent"
	wsl_conf >"$dir/root/etc/wsl.conf"
	chmod 0644 "$dir/root/etc/wsl.conf"
	wsl_tar "$dir/root" "$OUT/.wsl-rootfs.tar"
	rm -rf "$dir"
	zstd -q "-$WSL_ZSTD_LEVEL" --long=27 -T0 --rm -f -o "$OUT/.wsl-rootfs.tar.zst" "$OUT/.wsl-rootfs.tar"
	mv -f "$OUT/.wsl-rootfs.tar.zst" "$OUT/wsl-rootfs.tar.zst"
}

# wsl_manifest_line prints the manifest's line for the tar, if this build made one; the
# comma leads, since the entries before it end their line without one.
wsl_manifest_line() {
	[ -f "$OUT/wsl-rootfs.tar.zst" ] || return 0
	printf '    ,%s\n' "$(manifest_entry wsl-rootfs wsl-rootfs.tar)"
}
