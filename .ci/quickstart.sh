#!/usr/bin/env bash
# The README's first command as a new user meets it: a fresh HOME (no docker config, no
# Skiff data, nothing of ours on PATH), `make up`, and then the plain commands a user
# types next: `docker ps` and `docker run` without --context, -H or DOCKER_HOST, and
# `skiff machine list` found on PATH, with its shell completion installed. Stopping the
# machine must give docker's current context back. Arguments, if any, are a command run
# while the machine is up (CI's dashboard screenshot), with SKIFF_HOME set for it.
#   .ci/quickstart.sh [CMD ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."

fresh=$(mktemp -d /tmp/skiff-newuser.XXXXXX)
prefix=$fresh/prefix
# Go's caches stay: a new user's first build is cold, but rebuilding here proves nothing.
GOCACHE=$(go env GOCACHE) GOMODCACHE=$(go env GOMODCACHE) GOPATH=$(go env GOPATH)
export GOCACHE GOMODCACHE GOPATH
export HOME=$fresh/home PATH=$prefix/bin:$PATH
mkdir -p "$HOME"
unset SKIFF_HOME SKIFF_IMAGE DOCKER_HOST DOCKER_CONTEXT DOCKER_CONFIG XDG_CACHE_HOME XDG_CONFIG_HOME XDG_DATA_HOME
cleanup() {
	[ -x "$prefix/bin/skiff" ] && "$prefix/bin/skiff" machine rm -f >/dev/null 2>&1 || true
	rm -rf "$fresh"
}
trap cleanup EXIT
fail() {
	echo "quickstart: FAIL: $*" >&2
	exit 1
}
check() { echo "quickstart: ok: $*"; }

if ! make --no-print-directory up PREFIX="$prefix" 2>&1 | tee "$fresh/up.log"; then
	m=$HOME/.local/share/skiff/machines/default
	[ -n "${ARTIFACTS:-}" ] && mkdir -p "$ARTIFACTS/up-machine" && cp "$m"/*.log* "$ARTIFACTS/up-machine/" 2>/dev/null
	echo "==> agent.log"; cat "$m/agent.log" 2>/dev/null || true
	echo "==> the console's end"; tail -c 6000 "$m/serial.log" 2>/dev/null || true
	fail "make up failed"
fi
grep -q "hello from a container in skiff" "$fresh/up.log" || fail "make up ran no container"

[ "$(command -v skiff)" = "$prefix/bin/skiff" ] || fail "skiff is not on PATH after make up (found: $(command -v skiff || echo nothing))"
# grep reads all its input (no -q): under pipefail a grep that quits at the first match
# can kill the writer with SIGPIPE and fail the pipeline.
skiff machine list --format '{{.Name}} {{.Status.State}}' | grep -x "default running" >/dev/null || fail "skiff machine list does not show default running"
check "skiff on PATH: $(command -v skiff); machine list shows default running"

for f in share/bash-completion/completions/skiff share/zsh/site-functions/_skiff share/fish/vendor_completions.d/skiff.fish; do
	[ -s "$prefix/$f" ] || fail "no shell completion at $prefix/$f"
done
bash -c "source '$prefix/share/bash-completion/completions/skiff' && complete -p skiff" >/dev/null || fail "bash completion does not load"
skiff __complete machine stop '' 2>/dev/null | grep -x default >/dev/null || fail "completion does not offer the machine's name"
check "completion for bash, zsh and fish installed; bash loads it; it offers machine names"

# Nothing answers at /var/run/docker.sock here, so the start must have made Skiff current.
[ "$(docker context show)" = skiff ] || fail "docker's current context is $(docker context show), not skiff"
docker ps >/dev/null || fail "plain docker ps failed"
out=$(docker run --rm skiff-test/busybox echo plain docker reaches skiff) || fail "plain docker run failed"
[ "$out" = "plain docker reaches skiff" ] || fail "docker run printed: $out"
check "plain docker ps and docker run reach the machine (current context: skiff)"

if [ $# -gt 0 ]; then
	SKIFF_HOME=$HOME/.local/share/skiff "$@"
fi

skiff machine stop | tee "$fresh/stop.log"
grep -q 'current context is "default" again' "$fresh/stop.log" || fail "stop did not say it put back docker's current context"
[ "$(docker context show)" = default ] || fail "after stop, docker's current context is $(docker context show), want default"
check "stop put docker's current context back to default"
skiff machine rm -f >/dev/null
check "quick start as a new user"
