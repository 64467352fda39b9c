#!/usr/bin/env bash
# Installs, from Debian packages, what `make test` runs besides Go, when it
# is missing: node and npm (the MCP interop test runs the reference
# TypeScript SDK's client) and nginx (the cluster test routes through
# deploy/nginx). Needs root and the Debian mirror; does nothing when all
# are there.
set -euo pipefail
need=()
command -v node >/dev/null && command -v npm >/dev/null || need+=(nodejs npm)
command -v nginx >/dev/null || need+=(nginx-light)
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing ${need[*]} (Debian packages) for the tests" >&2
apt-get update -qq
# The tests start their own nginx; keep the package from starting the
# system service on port 80 while it installs.
rc=/usr/sbin/policy-rc.d
if [ ! -e "$rc" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$rc" && chmod +x "$rc"
	trap 'rm -f "$rc"' EXIT
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
