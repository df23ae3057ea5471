# The Kubernetes layer: kube.squashfs.zst, sourced by build.sh (issue 26, part 3).
#
# A squashfs the host attaches as one more read-only disk to the machines that run
# Kubernetes (machine.Spec.Kubernetes); the guest mounts it at /opt/kube
# (images/guestinit/kube_linux.go). It holds:
#   bin/kube        the control plane, kubelet, kube-proxy and kubectl in one binary
#                   (images/kube), and a link for each name
#   bin/kubectl     a wrapper that defaults KUBECONFIG to the machine's admin.conf
#   bin/etcd, bin/ctr   etcd from trixie, and containerd's client (the root leaves it out)
#   cni/bin/        the CNI plugins the network uses (bridge, host-local, portmap,
#                   firewall, loopback) from trixie's containernetworking-plugins
#   etc/            containerd's configuration with the CRI plugin on, the CNI network
#   images/pause.tar    the pod sandbox image (an OCI archive of a static pause built here)
# Built once per recipe (this file, images/kube's sources and build script) and cached
# under CACHE/kube-ARCH-KEY like the root; the Kubernetes build alone takes ~20 min cold.

KUBE_KEY=$(cat "$HERE/kubelayer.sh" "$HERE"/kube/{go.mod,go.sum,main.go,build.sh,pause.c} <(echo "$ARCH $SUITE $SOURCE_DATE_EPOCH") | sha256sum | cut -c1-16)
KUBE_DIR=$CACHE/kube-$ARCH-$KUBE_KEY
KUBE_PKGS=(etcd-server containernetworking-plugins containerd)
KUBE_PAUSE=skiff.local/pause:3.10

kube_cached() { [ -f "$KUBE_DIR/kube.squashfs.zst" ]; }

# kube_debs DIR downloads KUBE_PKGS for ARCH from trixie into DIR, unpacked under DIR/x,
# and records their versions in DIR/kube-packages.lock.
kube_debs() {
	local tmp=$1
	mkdir -p "$tmp/lists/partial" "$tmp/x"
	echo "deb $MIRROR $SUITE main" >"$tmp/sources.list"
	local apt=(-o "Dir::Etc::SourceList=$tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null
		-o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache" -o APT::Sandbox::User=root
		-o "APT::Architecture=$ARCH" -o "APT::Architectures::=$ARCH")
	apt-get "${apt[@]}" update -qq
	(cd "$tmp" && apt-get "${apt[@]}" download -qq "${KUBE_PKGS[@]/%/:$ARCH}")
	local d
	for d in "$tmp"/*.deb; do
		dpkg-deb -x "$d" "$tmp/x"
		dpkg-deb -W --showformat='${Package} ${Version} ${Architecture}\n' "$d" >>"$tmp/kube-packages.lock"
	done
}

# kube_pause_image DIR writes DIR/pause.tar, an OCI image archive of a static pause, and
# DIR/pause.digest, its manifest's digest (the guest imports it once per digest).
kube_pause_image() {
	local out=$1 tmp host cc=gcc
	tmp=$(mktemp -d)
	host=$(cross_host)
	[ -n "$host" ] && cc=$host-gcc
	mkdir -p "$tmp/root" "$tmp/oci/blobs/sha256"
	"$cc" -static -Os -s -ffile-prefix-map="$HERE=." -o "$tmp/root/pause" "$HERE/kube/pause.c"
	local tarflags=(--sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" --format=gnu)
	tar -C "$tmp/root" "${tarflags[@]}" -cf "$tmp/layer.tar" pause
	local layer lsize config csize manifest msize
	layer=$(sha "$tmp/layer.tar") lsize=$(stat -c %s "$tmp/layer.tar")
	mv "$tmp/layer.tar" "$tmp/oci/blobs/sha256/$layer"
	printf '{"architecture":"%s","os":"linux","config":{"Entrypoint":["/pause"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
		"$ARCH" "$layer" >"$tmp/config.json"
	config=$(sha "$tmp/config.json") csize=$(stat -c %s "$tmp/config.json")
	mv "$tmp/config.json" "$tmp/oci/blobs/sha256/$config"
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%d}]}' \
		"$config" "$csize" "$layer" "$lsize" >"$tmp/manifest.json"
	manifest=$(sha "$tmp/manifest.json") msize=$(stat -c %s "$tmp/manifest.json")
	mv "$tmp/manifest.json" "$tmp/oci/blobs/sha256/$manifest"
	printf '{"imageLayoutVersion":"1.0.0"}' >"$tmp/oci/oci-layout"
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"platform":{"architecture":"%s","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
		"$manifest" "$msize" "$ARCH" "$KUBE_PAUSE" "${KUBE_PAUSE##*:}" >"$tmp/oci/index.json"
	tar -C "$tmp/oci" "${tarflags[@]}" -cf "$out/pause.tar" .
	echo "sha256:$manifest" >"$out/pause.digest"
	rm -rf "$tmp"
}

# kube_configs DIR writes the layer's etc/.
kube_configs() {
	local etc=$1
	mkdir -p "$etc/cni/net.d"
	# The image's own containerd.toml (rootfs.sh) with the CRI plugin on; its CNI network
	# and plugins come from this layer.
	cat >"$etc/containerd.toml" <<-EOF
		version = 2
		disabled_plugins = ["io.containerd.snapshotter.v1.btrfs",
		  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
		  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.blockfile",
		  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
		  "io.containerd.nri.v1.nri"]

		[plugins."io.containerd.internal.v1.opt"]
		  path = "/var/lib/containerd/opt"

		[plugins."io.containerd.grpc.v1.cri"]
		  sandbox_image = "$KUBE_PAUSE"
		  enable_cdi = false
		  [plugins."io.containerd.grpc.v1.cri".containerd]
		    default_runtime_name = "runc"
		    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
		      runtime_type = "io.containerd.runc.v2"
		  [plugins."io.containerd.grpc.v1.cri".cni]
		    bin_dir = "/opt/kube/cni/bin"
		    conf_dir = "/opt/kube/etc/cni/net.d"
	EOF
	# One node: pods get addresses from 10.244.0.0/24 on the cni0 bridge, masqueraded
	# beyond it; firewall lets their traffic past dockerd's FORWARD policy (DROP).
	cat >"$etc/cni/net.d/10-skiff.conflist" <<-'EOF'
		{
		  "cniVersion": "1.0.0",
		  "name": "skiff",
		  "plugins": [
		    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
		     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
		    {"type": "portmap", "capabilities": {"portMappings": true}},
		    {"type": "firewall", "backend": "iptables"}
		  ]
		}
	EOF
}

# build_kube_layer builds KUBE_DIR/kube.squashfs.zst.
build_kube_layer() {
	local tmp r
	tmp=$(mktemp -d)
	r=$tmp/layer
	mkdir -p "$r/bin" "$r/cni/bin" "$r/images"
	echo "build.sh: building the Kubernetes binary for $ARCH (images/kube)" >&2
	"$HERE/kube/build.sh" "$ARCH" "$r/bin/kube"
	local n
	for n in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do ln -s kube "$r/bin/$n"; done
	cat >"$r/bin/kubectl" <<-'EOF'
		#!/bin/sh
		# kubectl for the machine's cluster: the admin kubeconfig unless told otherwise.
		export KUBECONFIG="${KUBECONFIG:-/var/lib/skiff/kube/admin.conf}"
		exec /opt/kube/bin/kube kubectl "$@"
	EOF
	chmod 0755 "$r/bin/kubectl"
	echo "build.sh: fetching ${KUBE_PKGS[*]} ($ARCH) from $SUITE" >&2
	kube_debs "$tmp/debs"
	install -m 0755 "$tmp/debs/x/usr/bin/etcd" "$tmp/debs/x/usr/bin/ctr" "$r/bin/"
	for n in bridge host-local portmap firewall loopback; do install -m 0755 "$tmp/debs/x/usr/lib/cni/$n" "$r/cni/bin/"; done
	kube_pause_image "$r/images"
	kube_configs "$r/etc"
	find "$r" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
	mkdir -p "$KUBE_DIR.tmp"
	mksquashfs "$r" "$KUBE_DIR.tmp/kube.squashfs" -noappend -all-root -noI -noD -noF -noX -b 1M -quiet -no-progress >/dev/null
	pack "$KUBE_DIR.tmp/kube.squashfs"
	cp "$tmp/debs/kube-packages.lock" "$KUBE_DIR.tmp/"
	rm -rf "$tmp" "$KUBE_DIR"
	mv "$KUBE_DIR.tmp" "$KUBE_DIR"
	echo "build.sh: Kubernetes layer $ARCH ($KUBE_KEY): $(($(stat -c %s "$KUBE_DIR/kube.squashfs.zst") / 1048576)) MiB compressed" >&2
}

# kube_layer puts the layer in OUT when it is cached or KUBE=build asks for it, and says
# so; otherwise the image has none (machines with Kubernetes refuse to start on it).
kube_layer() {
	rm -f "$OUT/kube.squashfs" "$OUT/kube.squashfs.zst" "$OUT/kube-packages.lock"
	if ! kube_cached; then
		if [ "$KUBE" != build ]; then
			echo "build.sh: no Kubernetes layer: not cached ($KUBE_KEY); build it with: images/build.sh ... --kube (make image-kube)" >&2
			return 0
		fi
		build_kube_layer
	fi
	cp "$KUBE_DIR/kube.squashfs.zst" "$OUT/.kube.squashfs.zst.tmp" && mv -f "$OUT/.kube.squashfs.zst.tmp" "$OUT/kube.squashfs.zst"
	cp "$KUBE_DIR/kube-packages.lock" "$OUT/kube-packages.lock"
}

kube_manifest_line() {
	[ -f "$OUT/kube.squashfs.zst" ] || return 0
	printf '    ,%s\n' "$(manifest_entry kube kube.squashfs)"
}
