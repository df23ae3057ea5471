#!/usr/bin/env bash
# Builds and tests the tray app and dashboard (gui/, cmd/skiff-tray).
#   .ci/gui-test.sh            vet, headless widget tests, linux + windows builds, darwin
#                              type-check of the cgo-free packages, Xvfb screenshots
#                              (demo data and a fake Skiff home)
#   SKIFF_GUI_E2E_HOME=... SKIFF_GUI_E2E_MACHINE=... .ci/gui-test.sh
#                              also screenshots the dashboard against that running machine
# Artifacts (PNGs) go to $SKIFF_ARTIFACTS (default ./artifacts). Keep GOCACHE between
# runs: a cold cgo build of fyne for windows takes minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
ART="${SKIFF_ARTIFACTS:-$PWD/artifacts}"
mkdir -p "$ART"
ART="$(cd "$ART" && pwd)"
export SKIFF_ARTIFACTS="$ART"

step() { printf '\n== %s\n' "$*"; }

step "apt dependencies"
pkgs=(gcc pkg-config libgl1-mesa-dev xorg-dev libxkbcommon-dev gcc-mingw-w64-x86-64 xvfb imagemagick)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

step "gofmt and vet (linux)"
bad=$(gofmt -l gui cmd/skiff-tray)
if [[ -n "$bad" ]]; then echo "gofmt needed: $bad"; exit 1; fi
go vet ./gui/... ./cmd/skiff-tray

step "headless tests (fyne test driver, fake agent and engine; -race)"
go test -race -count=1 ./gui/...

step "build linux"
go build -o "$ART/skiff-tray" ./cmd/skiff-tray

step "build windows (mingw)"
CGO_ENABLED=1 GOOS=windows CC=x86_64-w64-mingw32-gcc go build -o "$ART/skiff-tray.exe" ./cmd/skiff-tray
CGO_ENABLED=0 GOOS=windows go vet ./gui/model ./gui/engine ./gui/fake

step "type-check darwin (cgo-free packages; fyne itself needs the macOS SDK)"
CGO_ENABLED=0 GOOS=darwin go vet ./gui/model ./gui/engine ./gui/fake

step "Xvfb: demo screenshot"
xvfb_pid=""
tray_pid=""
cleanup() {
	[[ -n "$tray_pid" ]] && kill "$tray_pid" 2>/dev/null || true
	[[ -n "$xvfb_pid" ]] && kill "$xvfb_pid" 2>/dev/null || true
}
trap cleanup EXIT
displayfile=$(mktemp)
Xvfb -displayfd 6 -screen 0 1280x800x24 -nolisten tcp 6>"$displayfile" 2>/dev/null &
xvfb_pid=$!
for _ in $(seq 50); do [[ -s "$displayfile" ]] && break; sleep 0.1; done
export DISPLAY=":$(head -n1 "$displayfile")"
rm -f "$displayfile"
"$ART/skiff-tray" --demo --no-tray --width 1280 --height 800 >"$ART/skiff-tray-demo.log" 2>&1 &
tray_pid=$!
sleep 4
kill -0 "$tray_pid" || { echo "skiff-tray --demo exited:"; cat "$ART/skiff-tray-demo.log"; exit 1; }
import -window root "$ART/skiff-dashboard-demo.png"
kill "$tray_pid"; wait "$tray_pid" 2>/dev/null || true; tray_pid=""
colours=$(identify -format '%k' "$ART/skiff-dashboard-demo.png")
echo "demo screenshot: $ART/skiff-dashboard-demo.png ($colours colours)"
if ((colours < 32)); then echo "the demo screenshot is blank"; exit 1; fi

step "Xvfb: screenshot test against a fake Skiff home"
SKIFF_GUI_E2E_FAKE=1 SKIFF_ARTIFACTS="$ART/fake-home" go test -count=1 -v -run TestDashboardScreenshot ./gui/e2e

if [[ -n "${SKIFF_GUI_E2E_HOME:-}" && -n "${SKIFF_GUI_E2E_MACHINE:-}" ]]; then
	step "Xvfb: screenshot test against machine $SKIFF_GUI_E2E_MACHINE"
	go test -count=1 -v -timeout 10m -run TestDashboardScreenshot ./gui/e2e
fi
echo; echo "gui tests passed; artifacts in $ART"
