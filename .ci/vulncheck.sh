#!/usr/bin/env bash
# govulncheck against an offline copy of the Go vulnerability database; fails on a
# vulnerability the code can reach (govulncheck's symbol scan: a call path from Skiff's
# code to a vulnerable function, in the standard library or a required module).
#
# The database is the golang.org/x/vulndb module at a pinned version, taken from the Go
# module proxy like any module: its data/osv/*.json are indexed into the v1 layout that
# `govulncheck -db file://DIR` reads (index/db.json, index/modules.json, index/vulns.json,
# ID/GO-YYYY-NNNN.json) by upstream's own tool, golang.org/x/vulndb/cmd/indexdb. The result
# is cached under $SKIFF_CACHE/vulndb-VERSION (default /var/cache/skiff); a cold build takes
# about a minute (the tool's dependencies come from the proxy), a warm run reuses it.
#
# Scanned: linux (the host's GOARCH, with cgo: the GUI too), windows/amd64 (cgo with mingw,
# as .ci/gui-test.sh builds the tray) and darwin/arm64 (without cgo, against the vz stub of
# vmm/vz/internal/stubgen; the fyne GUI, which needs the macOS SDK, is left out there).
#
#   .ci/vulncheck.sh                  all three
#   .ci/vulncheck.sh linux            some of them
#   SKIFF_VULNDB_VERSION=v0.0.0-...   another database snapshot
#   GOTOOLCHAIN=go1.27.3              the standard library of another Go
# Exit: 0 nothing reachable, 1 a reachable vulnerability or a failed scan.
# Full reports: $SKIFF_ARTIFACTS/vulncheck-GOOS.txt (default ./artifacts).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH

VULNDB_VERSION=${SKIFF_VULNDB_VERSION:-v0.0.0-20261105234957-e22db6528018}
GOVULNCHECK_VERSION=v1.9.0
ARTIFACTS=${SKIFF_ARTIFACTS:-$PWD/artifacts}
mkdir -p "$ARTIFACTS"

CACHE=${SKIFF_CACHE:-/var/cache/skiff}
if ! mkdir -p "$CACHE" 2>/dev/null || [ ! -w "$CACHE" ]; then
	[ -z "${SKIFF_CACHE:-}" ] || { echo "vulncheck: cache folder $CACHE is not writable" >&2; exit 1; }
	CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/skiff
	mkdir -p "$CACHE"
fi

work=$(mktemp -d) tmp=
trap 'rm -rf "$work" ${tmp:+"$tmp"}' EXIT

# All go commands that fetch tools run outside the module so go.mod and go.sum stay as they are.
outside() { (cd "$work" && GOFLAGS= "$@"); }

# The database: built into a temp folder next to its place and renamed, so an interrupted
# or concurrent build never leaves a half-written one behind.
db=$CACHE/vulndb-$VULNDB_VERSION
if [ ! -f "$db/index/modules.json" ]; then
	start=$SECONDS
	echo "vulncheck: building the vulnerability database golang.org/x/vulndb@$VULNDB_VERSION"
	json=$(outside go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION")
	src=$(sed -n 's/^\t"Dir": "\(.*\)",$/\1/p' <<<"$json")
	info=$(sed -n 's/^\t"Info": "\(.*\)",$/\1/p' <<<"$json")
	[ -d "$src/data/osv" ] || { echo "vulncheck: no data/osv in golang.org/x/vulndb@$VULNDB_VERSION" >&2; exit 1; }
	tmp=$(mktemp -d "$CACHE/.vulndb-build.XXXXXX")
	outside go run "golang.org/x/vulndb/cmd/indexdb@$VULNDB_VERSION" -vulns "$src/data/osv" -out "$tmp/db"
	# govulncheck reads the plain files from disk; the .gz copies are for serving over HTTP.
	find "$tmp/db" -name '*.json.gz' -delete
	# The module's OSV files carry no modification times (upstream sets them from git
	# history), so the index says year 1; date it by the snapshot's commit instead.
	when=$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$info")
	[ -z "$when" ] || printf '{"modified":"%s"}' "$when" >"$tmp/db/index/db.json"
	chmod -R a+rX "$tmp/db"
	mv -T "$tmp/db" "$db" 2>/dev/null || [ -f "$db/index/modules.json" ] # another run won
	rm -rf "$tmp"
	tmp=
	echo "vulncheck: database ready in $((SECONDS - start)) s: $db ($(du -sh "$db" | cut -f1), $(ls "$db/ID" | wc -l) entries)"
fi

# govulncheck, built by the Go that runs the scan: it type-checks that Go's standard library.
gover=$(go env GOVERSION)
bin=$CACHE/govulncheck-$GOVULNCHECK_VERSION-$gover/govulncheck
if [ ! -x "$bin" ]; then
	outside env GOBIN="$work/bin" go install "golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK_VERSION"
	mkdir -p "${bin%/*}"
	mv "$work/bin/govulncheck" "$bin.$$" && mv "$bin.$$" "$bin"
fi

# cgo for the GUI (fyne): the headers and mingw that .ci/gui-test.sh installs.
need_apt() {
	local missing=() p
	for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
	((${#missing[@]} == 0)) && return
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# The darwin scan uses a stub of vz (cgo over the macOS SDK), like .ci/cross-check.sh. The
# replace goes into a temporary go.work (GOWORK): govulncheck's package loader also runs
# the go command with GO111MODULE=off, which a -modfile in GOFLAGS would make fail.
darwin_work() {
	exec 3>&1 1>&2
	go build -o "$work/stubgen" ./vmm/vz/internal/stubgen
	"$work/stubgen" gen -out "$work/vzstub" -dir .
	mkdir "$work/darwin"
	(cd "$work/darwin" && GOWORK= go work init "$OLDPWD" && go work edit -replace="github.com/Code-Hex/vz/v3=$work/vzstub")
	echo "$work/darwin/go.work" >&3
}
darwin_cgo_only=(
	github.com/skiff-dev/skiff/gui/ui
	github.com/skiff-dev/skiff/gui/e2e
	github.com/skiff-dev/skiff/cmd/skiff-tray
)

targets=("$@")
((${#targets[@]})) || targets=(linux windows darwin)
echo "vulncheck: govulncheck $GOVULNCHECK_VERSION, $gover, database golang.org/x/vulndb@$VULNDB_VERSION"
failed=()
for t in "${targets[@]}"; do
	report=$ARTIFACTS/vulncheck-$t.txt
	env=() pkgs=(./...)
	case $t in
	linux)
		need_apt gcc pkg-config libgl1-mesa-dev xorg-dev libxkbcommon-dev
		env=(GOOS=linux CGO_ENABLED=1) ;;
	windows)
		need_apt gcc-mingw-w64-x86-64
		env=(GOOS=windows GOARCH=amd64 CGO_ENABLED=1 CC=x86_64-w64-mingw32-gcc) ;;
	darwin)
		env=(GOOS=darwin GOARCH=arm64 CGO_ENABLED=0 "GOWORK=$(darwin_work)")
		mapfile -t pkgs < <(env "${env[@]}" go list -e ./... 2>/dev/null | grep -vxF -f <(printf '%s\n' "${darwin_cgo_only[@]}")) ;;
	*) echo "vulncheck: unknown target $t (linux, windows, darwin)" >&2; exit 2 ;;
	esac
	printf '\n==> govulncheck %s\n' "$t"
	rc=0
	env "${env[@]}" "$bin" -db "file://$db" "${pkgs[@]}" >"$report" 2>&1 || rc=$?
	case $rc in
	0) echo "$t: no reachable vulnerability" ;;
	3)
		cat "$report"
		echo "$t: REACHABLE: $(grep -oE '^Vulnerability #[0-9]+: [A-Z0-9-]+' "$report" | sed 's/.*: //' | tr '\n' ' ')"
		failed+=("$t") ;;
	*)
		cat "$report"
		echo "$t: govulncheck failed (exit $rc)"
		failed+=("$t") ;;
	esac
done
if ((${#failed[@]})); then
	echo "vulncheck: FAILED for ${failed[*]} (reports in $ARTIFACTS/vulncheck-*.txt)"
	exit 1
fi
echo "vulncheck: passed"
