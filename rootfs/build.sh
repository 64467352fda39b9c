#!/usr/bin/env bash
# Builds the sandbox Python rootfs from Debian bookworm packages with
# mmdebstrap, cached outside the checkout by a hash of its inputs.
#
#   rootfs/build.sh          build if needed, print the rootfs directory
#   rootfs/build.sh --path   only print where the rootfs for these inputs lives
#
# The cache root is $SANDBOXD_CACHE (default /var/cache/sandboxd). A finished
# rootfs is never modified again: sandboxes share it read-only.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${SANDBOXD_CACHE:-/var/cache/sandboxd}
suite=bookworm

# The key covers everything that decides the rootfs contents; bump layout
# when this script changes what it produces.
layout=1
key=$( (echo "$suite $layout"; cat "$here/packages.txt" "$here/customize.sh") | sha256sum | cut -c1-16)
out="$cache/rootfs/$suite-$key"
# The marker sits beside the tree, not in it: nothing of ours shows inside.
done_marker="$out.complete"

if [ "${1:-}" = "--path" ]; then
	echo "$out"
	exit 0
fi
if [ -f "$done_marker" ] && [ -d "$out" ]; then
	echo "$out"
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "rootfs/build.sh: building the rootfs needs root (mmdebstrap, chroot)" >&2
	exit 1
fi
if ! command -v mmdebstrap >/dev/null; then
	echo "rootfs: installing mmdebstrap with apt-get" >&2
	apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >&2
fi

packages=$(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$here/packages.txt" | paste -sd, -)
mkdir -p "$cache/rootfs"
tmp=$(mktemp -d "$cache/rootfs/.build-XXXXXX")
# On failure mmdebstrap may leave /proc, /sys and /dev mounted in the tree:
# unmount them and never let rm cross into another file system.
cleanup() {
	findmnt -rn -o TARGET | grep -F "$tmp/" | sort -r | xargs -r -n1 umount -l || true
	rm -rf --one-file-system "$tmp"
}
trap cleanup EXIT

echo "rootfs: building $out with mmdebstrap (first time only; takes a few minutes)" >&2
# --variant=apt gives an apt-capable minimal system; the progress bars of
# mmdebstrap go to stderr when it is a terminal, its step log otherwise.
mmdebstrap --variant=apt --mode=root --format=directory \
	--include="$packages" \
	--customize-hook="$here/customize.sh \"\$1\"" \
	"$suite" "$tmp/root" >&2

chmod 0755 "$tmp/root"
rm -rf "$out"
mv "$tmp/root" "$out"
touch "$done_marker"
echo "rootfs: done, $(du -sh "$out" | cut -f1) in $out" >&2
echo "$out"
