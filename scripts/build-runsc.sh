#!/usr/bin/env bash
# Builds runsc from the gvisor.dev/gvisor module pinned in go.mod, with
# CGO_ENABLED=0 (a cgo runsc cannot re-exec itself inside the sandbox chroot),
# into a cache outside the checkout keyed by the exact module versions that
# go into it.
#
#   scripts/build-runsc.sh          build if needed, print the binary's path
#   scripts/build-runsc.sh --path   only print where the binary lives
set -euo pipefail

cd "$(dirname "$0")/.."
cache=${SANDBOXD_CACHE:-/var/cache/sandboxd}
export CGO_ENABLED=0

version=$(go list -m -f '{{.Version}}' gvisor.dev/gvisor)
# Every module (and version) compiled into runsc, plus the Go toolchain.
deps=$( (go version; go list -deps -f '{{with .Module}}{{.Path}}@{{.Version}}{{end}}' gvisor.dev/gvisor/runsc | sort -u) | sha256sum | cut -c1-12)
out="$cache/runsc/$version-$deps/runsc"

if [ "${1:-}" = "--path" ]; then
	echo "$out"
	exit 0
fi
if [ -x "$out" ]; then
	echo "$out"
	exit 0
fi

echo "runsc: building gvisor.dev/gvisor/runsc@$version (first time only; about 2 minutes)" >&2
mkdir -p "$(dirname "$out")"
tmp=$(mktemp "$(dirname "$out")/.runsc-XXXXXX")
trap 'rm -f "$tmp"' EXIT
go build -trimpath -o "$tmp" gvisor.dev/gvisor/runsc
chmod 0755 "$tmp"
mv "$tmp" "$out"
echo "runsc: done, $("$out" --version | head -1)" >&2
echo "$out"
