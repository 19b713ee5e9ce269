#!/usr/bin/env bash
# Run nginx terminating TLS in front of ssed, in the foreground: the deployment
# people run today for HTTPS SSE (see nginx.conf.in). ssed itself is started
# by the caller (lib.sh), on its own loopback port, plain HTTP.
# Usage: run.sh --upstream 127.0.0.1:PORT --cert FILE --key FILE
#               [--listen 127.0.0.1:PORT] [--heartbeat SECS] [--dir DIR] [--test]
#   (or env LISTEN / HEARTBEAT). --heartbeat is accepted for the common
#   interface and unused: the heartbeats are ssed's, proxied like events.
#   DIR (default: a new temp dir) gets the generated nginx.conf, pid and temp
#   paths; the caller removes it. --test only checks the generated config.
# `exec` keeps the PID: the caller's $! is nginx itself.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
listen=${LISTEN:-127.0.0.1:8443}
dir= test=0 upstream= cert= key=
while [ $# -gt 0 ]; do
    case $1 in
        --listen) listen=$2; shift 2 ;;
        --heartbeat) shift 2 ;;
        --upstream) upstream=$2; shift 2 ;;
        --cert) cert=$2; shift 2 ;;
        --key) key=$2; shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        --test) test=1; shift ;;
        *) echo "usage: $0 --upstream ADDR --cert FILE --key FILE [--listen ADDR] [--dir DIR] [--test]" >&2; exit 2 ;;
    esac
done
[ -n "$upstream" ] && [ -r "$cert" ] && [ -r "$key" ] \
    || { echo "$0: --upstream, and readable --cert and --key, are required" >&2; exit 2; }
[ -n "$dir" ] || dir=$(mktemp -d "${TMPDIR:-/tmp}/ssed-nginx-tls.XXXXXX")
mkdir -p "$dir"
chmod 755 "$dir"   # the workers (user nobody) create their temp dirs in here
sed -e "s|@DIR@|$dir|g" -e "s|@LISTEN@|$listen|g" -e "s|@UPSTREAM@|$upstream|g" \
    -e "s|@CERT@|$cert|g" -e "s|@KEY@|$key|g" "$here/nginx.conf.in" > "$dir/nginx.conf"
if [ "$test" = 1 ]; then nginx -t -q -e stderr -p "$dir" -c "$dir/nginx.conf"; exit; fi
# -e stderr: do not touch the system's /var/log/nginx before the config is read.
exec nginx -e stderr -p "$dir" -c "$dir/nginx.conf"
