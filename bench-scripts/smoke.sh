#!/usr/bin/env bash
# smoke.sh: check by hand (curl only) that servers speak the common interface.
# For each server: start it with a 1 s heartbeat; two curl subscribers on
# /events/room-1 and one on /events/other; after 1.5 s POST "hello smoke" to
# room-1; after 3 s show what each subscriber got and check: status 200,
# text/event-stream, no-cache, a keep-alive heartbeat, the event reached both
# room-1 subscribers and not the other one.
# Usage: smoke.sh [--servers a,b,c] [--no-build] [--tls]   (prints PASS/FAIL per server)
#   --tls: the TLS servers over HTTPS (curl --cacert build/tls/ca.pem --http1.1)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
servers= build=1
while [ $# -gt 0 ]; do
    case $1 in
        --servers) servers=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        --tls) use_tls; shift ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
if [ -z "$servers" ]; then if [ "$TLS" = 1 ]; then servers=$TLS_SERVERS; else servers=$ALL_SERVERS; fi; fi
scheme=http curl_tls=()
[ "$TLS" = 0 ] || { scheme=https; curl_tls=(--cacert "$TLS_DIR/ca.pem" --http1.1); }
install_trap
[ "$build" = 0 ] || build_all
fails=0
for s in $(split_csv "$servers"); do
    server_available "$s" || { log "SKIP $s: $WHY_NOT"; continue; }
    start_server "$s" 1
    base=$scheme://127.0.0.1:$SERVER_PORT/events
    out=$(mktemp -d); TMPDIRS+=("$out")
    curl_pids=()
    for f in a1:room-1 a2:room-1 b:other; do
        curl "${curl_tls[@]}" -sS -N -i --max-time 3 -H "Accept: text/event-stream" "$base/${f#*:}" >"$out/${f%%:*}" 2>/dev/null &
        PIDS+=($!); curl_pids+=($!)
    done
    sleep 1.5
    code=$(curl "${curl_tls[@]}" -sS -o /dev/null -w '%{http_code}' --max-time 2 --data-binary 'hello smoke' "$base/room-1")
    for p in "${curl_pids[@]}"; do wait "$p" || true; done
    echo "=== $s (POST answered $code)"
    ok=1
    for f in a1 a2 b; do
        echo "--- subscriber $f:"; tr -d '\r' <"$out/$f" | sed 's/^/    /'
        grep -qi '^HTTP/1.1 200' "$out/$f" || ok=0
        grep -qi '^content-type: text/event-stream' "$out/$f" || ok=0
        grep -qi '^cache-control: no-cache' "$out/$f" || ok=0
        grep -q '^event: keep-alive' "$out/$f" || ok=0
    done
    grep -q '^data: hello smoke' "$out/a1" && grep -q '^data: hello smoke' "$out/a2" || ok=0
    grep -q '^data: hello smoke' "$out/b" && ok=0
    case $code in 2??) ;; *) ok=0 ;; esac
    if [ $ok = 1 ]; then echo "PASS $s"; else echo "FAIL $s"; fails=$((fails + 1)); fi
    stop_server
done
[ $fails = 0 ]
