#!/bin/sh
# Writes sandboxd-nodes.conf for nginx.conf from the cluster's node
# addresses (each HOST:PORT, as the daemons' --node-address): the
# allow-list map from x-sandbox-node to one upstream per node, and the
# upstream sandboxd_any with every node; each upstream keeps up to 32 idle
# connections open (keepalive), so a call does not pay a new TCP and HTTP/2
# handshake to its node. Usage: nodes.sh HOST:PORT... > sandboxd-nodes.conf
set -eu
[ $# -gt 0 ] || { echo "usage: $0 HOST:PORT... > sandboxd-nodes.conf" >&2; exit 2; }
for a in "$@"; do
	case "$a" in
	*[!A-Za-z0-9.:\[\]-]* | "" | *:) echo "$0: bad node address '$a'" >&2; exit 2 ;;
	esac
done
echo "# Written by deploy/nginx/nodes.sh; the cluster's nodes, and no others."
echo 'map $http_x_sandbox_node $sandboxd_node {'
echo '	default "";'
i=0
for a in "$@"; do
	i=$((i + 1))
	printf '\t"%s" sandboxd_node_%d;\n' "$a" "$i"
done
echo '}'
i=0
for a in "$@"; do
	i=$((i + 1))
	printf 'upstream sandboxd_node_%d {\n\tserver %s max_fails=0;\n\tkeepalive 32;\n}\n' "$i" "$a"
done
echo 'upstream sandboxd_any {'
for a in "$@"; do
	printf '\tserver %s;\n' "$a"
done
printf '\tkeepalive 32;\n'
echo '}'
