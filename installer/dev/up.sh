#!/usr/bin/env bash
# `make up`: a fresh Debian/Ubuntu host to a container running in Skiff's default machine.
# Dependencies install while the CLI builds (the build needs only Go); then the guest image
# (its root is cached by a hash of its recipe, so only a first build is slow), `make
# install` (skiff on PATH with shell completion), init, start, and docker run. It ends with
# the time each phase took.
set -euo pipefail
cd "$(dirname "$0")/../.."
MAKE=${MAKE:-make}
PREFIX=${PREFIX:-/usr/local}

declare -a report
clock() { date +%s%3N; } # milliseconds
secs() { printf '%d.%d' $(($1 / 1000)) $(($1 % 1000 / 100)); }
began=$(clock)
mark=$began
done_phase() { # name: records the time since the previous mark
	local now
	now=$(clock)
	report+=("$(printf '%-26s %7ss' "$1" "$(secs $((now - mark)))")")
	mark=$now
}

echo "==> dependencies, with the CLI building alongside"
buildlog=$(mktemp)
$MAKE --no-print-directory build >"$buildlog" 2>&1 &
build=$!
installer/dev/deps.sh
if ! wait $build; then
	cat "$buildlog" >&2
	rm -f "$buildlog"
	echo "make up: building the CLI failed" >&2
	exit 1
fi
rm -f "$buildlog"
done_phase "dependencies + CLI build"

echo "==> guest image"
$MAKE --no-print-directory image
done_phase "guest image"

echo "==> install skiff to $PREFIX"
$MAKE --no-print-directory install PREFIX="$PREFIX" >/dev/null
done_phase "install"
skiff=$PREFIX/bin/skiff
case ":$PATH:" in
*":$PREFIX/bin:"*) skiff=skiff ;;
*) echo "note: $PREFIX/bin is not on your PATH; add it to run skiff by name" >&2 ;;
esac

# No grep -q: under pipefail, grep quitting at the first match can kill skiff with SIGPIPE.
$skiff machine list --format '{{.Name}}' | grep -x default >/dev/null || $skiff machine init
$skiff machine inspect --format '{{.Status.State}}' | grep -x running >/dev/null || $skiff machine start
done_phase "machine init + start"

# The test image is built here, not pulled: a static busybox in an otherwise empty image.
sock=$($skiff machine inspect --format '{{.Engine}}')
dk=(docker -H "unix://$sock")
if ! "${dk[@]}" image inspect skiff-test/busybox >/dev/null 2>&1; then
	d=$(mktemp -d)
	mkdir "$d/bin"
	cp "$(command -v busybox)" "$d/bin/"
	for a in $(busybox --list | grep -vx busybox); do ln -s busybox "$d/bin/$a"; done
	tar -C "$d" -c . | "${dk[@]}" import --change 'ENV PATH=/bin' - skiff-test/busybox >/dev/null
	rm -rf "$d"
fi
"${dk[@]}" run --rm skiff-test/busybox echo "hello from a container in skiff"
done_phase "first container"

echo
echo "make up took $(secs $(($(clock) - began)))s:"
printf '  %s\n' "${report[@]}"
if [ "$(docker context show 2>/dev/null)" = skiff ]; then
	echo "docker's current context is skiff: plain \`docker ps\` uses the machine."
else
	echo "docker's current context is $(docker context show 2>/dev/null || echo unknown): use \`docker --context skiff ps\`, or \`skiff machine start --switch-context\`."
fi
