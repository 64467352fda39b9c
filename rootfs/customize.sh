#!/bin/sh
# Runs as an mmdebstrap customize hook: $1 is the root of the new rootfs.
# Creates the unprivileged sandbox user, its working directories and headless
# defaults, and strips what a sandbox never needs. Changing this file changes
# the rootfs cache key.
set -eu
root="$1"

# The user sandboxed code runs as (uid/gid 1000; runtime/ocispec relies on it).
chroot "$root" groupadd --gid 1000 sandbox
chroot "$root" useradd --uid 1000 --gid 1000 --home-dir /home/sandbox \
	--create-home --shell /bin/bash sandbox

# /workspace is the default working directory; relative file paths land here.
install -d -o 1000 -g 1000 -m 0755 "$root/workspace"
# Mount point for the read-only agent binary.
install -d -m 0755 "$root/.sandboxd"

# matplotlib renders without a display (Agg) and keeps its config and font
# cache in MPLCONFIGDIR, which the OCI spec sets to this directory. Building
# the font cache now saves seconds on the first plot in every sandbox.
install -d -o 1000 -g 1000 -m 0755 "$root/home/sandbox/.cache/matplotlib"
printf 'backend: Agg\n' > "$root/home/sandbox/.cache/matplotlib/matplotlibrc"
chroot --userspec=1000:1000 "$root" env HOME=/home/sandbox \
	MPLCONFIGDIR=/home/sandbox/.cache/matplotlib MPLBACKEND=Agg \
	python3 -c 'import matplotlib.font_manager as f; f._load_fontmanager(try_read_cache=False)'
chown -R 1000:1000 "$root/home/sandbox"

# mmdebstrap copies the build host's resolver and hostname; a sandbox has no
# network and must learn nothing of the host that built its rootfs.
printf '# sandboxes have no network and no resolver\n' > "$root/etc/resolv.conf"
printf 'sandbox\n' > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"

# Nothing in the sandbox needs apt state, docs or setuid bits.
rm -rf "$root/var/lib/apt/lists"/* "$root/var/cache/apt"/* \
	"$root/usr/share/doc"/* "$root/usr/share/man"/* "$root/usr/share/info"/*
find "$root" -xdev -perm /6000 -type f -exec chmod ug-s {} +
