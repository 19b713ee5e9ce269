#!/usr/bin/env bash
# Run the nginx + nchan baseline in the foreground: a master and one worker
# that holds every connection (see nginx.conf.in).
# Usage: run.sh [--listen 127.0.0.1:PORT] [--heartbeat SECS] [--dir DIR] [--test]
#              [--cert FILE --key FILE]
#   (or env LISTEN / HEARTBEAT). --cert/--key: serve HTTPS with this PEM
#   certificate and key (the nginx-nchan-tls baseline). DIR (default: a new temp dir) gets the
#   generated nginx.conf, pid and temp paths; the caller removes it.
#   --test only checks the generated config (nginx -t).
# nginx cannot report a port it picked itself, so PORT must be a real port.
# `exec` keeps the PID: the caller's $! is nginx itself.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
listen=${LISTEN:-127.0.0.1:8080}
heartbeat=${HEARTBEAT:-5}
dir= test=0 cert= key=
while [ $# -gt 0 ]; do
    case $1 in
        --listen) listen=$2; shift 2 ;;
        --heartbeat) heartbeat=$2; shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        --test) test=1; shift ;;
        --cert) cert=$2; shift 2 ;;
        --key) key=$2; shift 2 ;;
        *) echo "usage: $0 [--listen ADDR] [--heartbeat SECS] [--dir DIR] [--test] [--cert FILE --key FILE]" >&2; exit 2 ;;
    esac
done
[ -n "$dir" ] || dir=$(mktemp -d "${TMPDIR:-/tmp}/ssed-nginx.XXXXXX")
mkdir -p "$dir"
chmod 755 "$dir"   # the worker (user nobody) creates its temp dirs in here
# nchan takes whole seconds for the ping interval.
heartbeat=$(printf '%.0f' "$heartbeat")
[ "$heartbeat" -ge 1 ] || heartbeat=1
# TLS: "ssl" on the listen line, and the certificate in tls.conf (empty for plain HTTP).
ssl=
: > "$dir/tls.conf"
if [ -n "$cert$key" ]; then
    [ -r "$cert" ] && [ -r "$key" ] || { echo "$0: --cert and --key need readable files" >&2; exit 2; }
    ssl=" ssl"
    printf 'ssl_certificate %s;\nssl_certificate_key %s;\n' "$cert" "$key" > "$dir/tls.conf"
fi
sed -e "s|@DIR@|$dir|g" -e "s|@LISTEN@|$listen|g" -e "s|@HEARTBEAT@|$heartbeat|g" -e "s|@SSL@|$ssl|g" \
    "$here/nginx.conf.in" > "$dir/nginx.conf"
if [ "$test" = 1 ]; then nginx -t -q -e stderr -p "$dir" -c "$dir/nginx.conf"; exit; fi
# -e stderr: do not touch the system's /var/log/nginx before the config is read.
exec nginx -e stderr -p "$dir" -c "$dir/nginx.conf"
