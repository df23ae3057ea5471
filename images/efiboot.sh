# The Hyper-V boot disk: efi-boot.img (amd64), sourced by build.sh.
#
# A Hyper-V Generation 2 VM boots only through its UEFI firmware, so vmm/hyperv attaches
# this disk at SCSI LUN 0: a raw GPT disk with one EFI System Partition (FAT32) holding a
# unified kernel image at the removable-media path \EFI\BOOT\BOOTX64.EFI, which firmware
# boots with no boot entry set up. The UKI is systemd's EFI stub with the kernel, the
# initrd and the command line the manifest gives (images.Manifest.BootCmdline) plus
# skiff.luns, the LUN order vmm/hyperv attaches the other disks in: Hyper-V cannot give a
# disk a serial, so stage 1 finds them by LUN (images/guestinit/scsi_linux.go).
# Reproducible: fixed GUIDs and FAT serial, and mtools stamps every entry with
# SOURCE_DATE_EPOCH. Made in the fast stage, from the kernel and initrd of this build.

EFI_BOOT=efi-boot.img
EFI_DISK_GUID=5d1ff000-e41b-4d6a-9c2e-736b6966660a
EFI_PART_GUID=5d1ff000-e41b-4d6a-9c2e-736b69666601
EFI_FAT_SERIAL=5d1ff000
# The serial of the disk at LUN 0, 1, ... in vmm/hyperv's order (Backend.disks: the boot
# disk, then the host agent's cfg.Disks).
EFI_LUNS=skiff-boot,skiff-root,skiff-data,skiff-seed,skiff-engine
EFI_STUB=/usr/lib/systemd/boot/efi/linuxx64.efi.stub
# ukify comes from trixie (bookworm has none); it is a Python script run from where its
# package is unpacked, so the host's own systemd packages stay as they are.
UKIFY_DIR=$CACHE/tools/systemd-ukify
UKIFY=$UKIFY_DIR/usr/bin/ukify

# efiboot_tools installs what the disk is made with, once. Like need_tools, they are not
# part of the recipe.
efiboot_tools() {
	local missing=() t
	for t in sgdisk:gdisk mformat:mtools objdump:binutils; do command -v "${t%:*}" >/dev/null || missing+=("${t#*:}"); done
	[ -f "$EFI_STUB" ] || missing+=(systemd-boot-efi)
	/usr/bin/python3 -c 'import pefile' 2>/dev/null || missing+=(python3-pefile)
	if [ ${#missing[@]} -gt 0 ]; then
		echo "build.sh: installing EFI boot disk tools: ${missing[*]}" >&2
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
	[ -x "$UKIFY" ] && return 0
	echo "build.sh: fetching ukify (systemd-ukify) from trixie into $UKIFY_DIR" >&2
	local tmp
	tmp=$(mktemp -d)
	mkdir -p "$tmp/lists/partial"
	echo "deb $MIRROR trixie main" >"$tmp/sources.list"
	local apt=(-o "Dir::Etc::SourceList=$tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null
		-o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache" -o APT::Sandbox::User=root)
	apt-get "${apt[@]}" update -qq
	(cd "$tmp" && apt-get "${apt[@]}" download -qq systemd-ukify)
	rm -rf "$UKIFY_DIR.tmp"
	mkdir -p "$UKIFY_DIR.tmp"
	dpkg-deb -x "$tmp"/systemd-ukify_*.deb "$UKIFY_DIR.tmp"
	rm -rf "$UKIFY_DIR" "$tmp"
	mv "$UKIFY_DIR.tmp" "$UKIFY_DIR"
}

# build_efiboot writes OUT/efi-boot.img.zst from OUT's kernel and initrd.
build_efiboot() {
	[ "$ARCH" = amd64 ] || { rm -f "$OUT/$EFI_BOOT.zst"; return 0; }
	efiboot_tools
	local dir kver mib=1048576
	kver=$(cat "$ROOT_DIR/kernel.version")
	dir=$(mktemp -d)
	zstd -dcq --long=27 "$OUT/initrd.img.zst" >"$dir/initrd.img"
	# The additions images.Manifest.BootCmdline makes on amd64; the e2e test compares a
	# booted guest's /proc/cmdline with it.
	printf '%s panic=-1 rootwait %s=%s' "$KERNEL_ARGS" skiff.luns "$EFI_LUNS" >"$dir/cmdline"
	printf 'NAME="Skiff guest"\nID=skiff\nID_LIKE=debian\nVERSION_ID=%s\nPRETTY_NAME="Skiff guest (Debian %s, kernel %s)"\n' \
		"$SUITE" "$SUITE" "$kver" >"$dir/os-release"
	# Run by the system's Python: the script's `env python3` may find one without pefile.
	# The SBAT policy is the stub's own (no "uki" line): bookworm's stub leaves its .sbat
	# no room to grow before the next section, and a longer one overlapped it in memory
	# (the stub warned "Overlapping PE sections detected"). SBAT only matters to shim's
	# Secure Boot, which is off.
	/usr/bin/python3 "$UKIFY" build --stub "$EFI_STUB" --linux "$OUT/$KERNEL_NAME" --initrd "$dir/initrd.img" \
		--cmdline "@$dir/cmdline" --os-release "@$dir/os-release" --uname "$kver" \
		--sbat 'sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md' \
		--output "$dir/BOOTX64.EFI" >"$dir/ukify.log" 2>&1 || { cat "$dir/ukify.log" >&2; return 1; }
	efi_sections_apart "$dir/BOOTX64.EFI"
	touch -d "@$SOURCE_DATE_EPOCH" "$dir/BOOTX64.EFI"
	# FAT32 with 512-byte clusters needs at least 65525 of them: 34 MiB is the floor.
	local esp=$((($(stat -c %s "$dir/BOOTX64.EFI") + mib - 1) / mib + 4))
	[ "$esp" -ge 34 ] || esp=34
	local img=$dir/$EFI_BOOT
	# The ESP starts at 1 MiB; the backup GPT needs 33 sectors after it.
	truncate -s $(((esp + 2) * mib)) "$img"
	sgdisk --disk-guid="$EFI_DISK_GUID" -n "1:2048:+${esp}M" -t 1:ef00 -c "1:EFI System Partition" -u "1:$EFI_PART_GUID" "$img" >/dev/null
	local part=$img@@$mib
	mformat -i "$part" -T $((esp * mib / 512)) -H 2048 -h 16 -s 63 -F -c 1 -N "$EFI_FAT_SERIAL" -v SKIFF-EFI ::
	mmd -i "$part" ::EFI ::EFI/BOOT
	mcopy -m -i "$part" "$dir/BOOTX64.EFI" ::EFI/BOOT/BOOTX64.EFI
	pack "$img"
	mv -f "$img.zst" "$OUT/$EFI_BOOT.zst"
	rm -rf "$dir"
	# The tools are inputs too: another ukify or stub makes other bytes.
	echo "build.sh: $EFI_BOOT: $(/usr/bin/python3 "$UKIFY" --version), stub systemd-boot-efi $(dpkg-query -W -f '${Version}' systemd-boot-efi)" >&2
}

# efi_sections_apart fails when two sections of PE image $1 overlap once loaded: the
# firmware copies each to its address, so the later one would corrupt the earlier.
efi_sections_apart() {
	local idx name size vma end=0 prev= _
	while read -r idx name size vma _; do
		[[ $idx =~ ^[0-9]+$ ]] || continue
		if [ -n "$prev" ] && [ $((16#$vma)) -lt "$end" ]; then
			echo "build.sh: $1: section $name overlaps $prev in memory" >&2
			return 1
		fi
		end=$((16#$vma + 16#$size)) prev=$name
	done < <(objdump -h "$1")
}

# efiboot_manifest_line prints the manifest's line for the disk, if this build made one;
# the comma leads, since the entries before it end their line without one.
efiboot_manifest_line() {
	[ -f "$OUT/$EFI_BOOT.zst" ] || return 0
	printf '    ,%s\n' "$(manifest_entry efi-boot "$EFI_BOOT")"
}
