#!/usr/bin/env bash
# fanout.sh: one topic, many subscribers: latency, throughput and CPU cost of
# delivering events, ssed against the baselines. Per server, three phases,
# each on a fresh server process with N subscribers on /events/bench:
#   steady     publish K events at R/s (body "t=<unix micros>"): delivery
#              latency p50/p99/max, last-subscriber latency, and server CPU
#              per delivered event.
#   saturate   publish as fast as possible for S seconds: delivered events
#              per second and server CPU per delivered event.
#   heartbeat  the original question's workload: idle subscribers, heartbeat
#              every 1 s, for H seconds: server CPU per heartbeat delivered.
# Server CPU = utime + stime of the server process (/proc/PID/stat fields 14
# and 15, clock ticks / getconf CLK_TCK; for nginx, of its one worker). steady and saturate run the server
# with a 600 s heartbeat so no heartbeat work is billed to the events.
#
# Options:
#   --servers a,b,c    servers (default: ssed,floor,go-nethttp,go-hijack,axum,nginx-nchan;
#                      ssed-1w = ssed --workers 1 is also known)
#   --subscribers N    subscribers (default 10000)
#   --events K         steady: events to publish (default 100)
#   --rate R           steady: events per second (default 5: 50,000 deliveries/s
#                      to 10,000 subscribers, well below what 2 cores can do, so
#                      latency is the fan-out's own, not a queue's)
#   --saturate-seconds S   (default 10)
#   --heartbeat-seconds H  (default 10)
#   --pipeline W       saturate: POSTs in flight on the publisher's connection (default 16)
#   --phases a,b,c     subset of steady,saturate,heartbeat (default: all)
#   --processes P      ssed-bench subscriber processes (default: ssed-bench's own)
#   --tls              over HTTPS: the TLS servers (default: ssed,go-hijack-tls,axum-tls,
#                      nginx-tls,nginx-nchan-tls; ssed only if its --help has --tls-cert),
#                      subscribers and publisher with ssed-bench --tls --ca build/tls/ca.pem.
#                      nginx-tls (nginx in front of ssed) is billed the CPU of nginx's
#                      workers plus ssed's, both recorded (server_cpu_parts_us)
#   --no-build         do not run cargo build / build-baselines.sh
#   -h, --help
# Output: tables on stdout; one JSON line per server and phase (with the raw
# ssed-bench summaries) in bench-scripts/results/fanout-<time>.jsonl (and
# fanout-latest.jsonl), or under $SSED_BENCH_RESULTS if set. Servers: also
# ssed-1w (ssed --workers 1). Note: on this 2-core machine ssed-bench shares the
# CPUs with the server, so saturate measures the pair; CPU per event is the
# server's own and is the fairer comparison.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
invocation="bench-scripts/fanout.sh $*"

servers= subs=10000 events=100 rate=5 sat_s=10 hb_s=10
phases=steady,saturate,heartbeat processes= build=1 pipeline=16
while [ $# -gt 0 ]; do
    case $1 in
        --servers) servers=$2; shift 2 ;;
        --subscribers) subs=$2; shift 2 ;;
        --events) events=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --saturate-seconds) sat_s=$2; shift 2 ;;
        --heartbeat-seconds) hb_s=$2; shift 2 ;;
        --phases) phases=$2; shift 2 ;;
        --pipeline) pipeline=$2; shift 2 ;;
        --processes) processes=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        --tls) use_tls; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
if [ -z "$servers" ]; then if [ "$TLS" = 1 ]; then servers=$TLS_SERVERS; else servers=$ALL_SERVERS; fi; fi
for v in subs events rate sat_s hb_s pipeline; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number"
done
[ "$subs" -ge 1 ] && [ "$subs" -le 19000 ] || die "--subscribers: 1..19000 (20,000 open files per process)"
[ "$rate" -ge 1 ] && [ "$events" -ge 1 ] || die "--rate and --events must be >= 1"
for p in $(split_csv "$phases"); do
    case $p in steady|saturate|heartbeat) ;; *) die "unknown phase $p" ;; esac
done

prepare_servers "$servers" "$build"
todo=("${AVAILABLE[@]}")
TLS_JSON=$([ "$TLS" = 1 ] && echo true || echo false)

mkdir -p "$RESULTS"
out=$(results_file fanout)
stamp=$(basename "$out" .jsonl); stamp=${stamp#fanout-}
jq -nc --arg stamp "$stamp" --arg command "$invocation" --argjson mem "$(mem_total_kb)" --arg kernel "$(uname -r)" --arg commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --argjson cores "$(nproc)" --arg servers "${todo[*]}" --argjson subs "$subs" --argjson events "$events" --argjson rate "$rate" \
    --argjson sat "$sat_s" --argjson hb "$hb_s" --argjson tck "$CLK_TCK" --argjson w "$pipeline" --argjson tls "$TLS_JSON" \
    '{bench:"fanout",kind:"meta",stamp:$stamp,command:$command,mem_total_kb:$mem,kernel:$kernel,commit:$commit,cores:$cores,servers:$servers,subscribers:$subs,
      steady_events:$events,steady_rate:$rate,saturate_s:$sat,saturate_pipeline:$w,heartbeat_window_s:$hb,clk_tck:$tck,tls:$tls}' >"$out"

SUB_PID= SUB_LOG=
# start_subscribers EXTRA-ARGS...: N subscribers on /events/bench; waits for "ready".
start_subscribers() {
    SUB_LOG=$(mktemp "${TMPDIR:-/tmp}/ssed-bench-sub.XXXXXX"); TMPDIRS+=("$SUB_LOG" "$SUB_LOG.err")
    "$BENCH" subscribe --addr "127.0.0.1:$SERVER_PORT" --path /events/bench --connections "$subs" \
        --connect-timeout 120 --heartbeat-event keep-alive ${processes:+--processes "$processes"} "${BENCH_TLS[@]}" "$@" >"$SUB_LOG" 2>"$SUB_LOG.err" &
    SUB_PID=$!; PIDS+=("$SUB_PID")
    wait_ready "$SUB_LOG" "$SUB_PID" 300
    local f; f=$(ready_field "$SUB_LOG" failed)
    [ "$f" = 0 ] || log "warning: $f of $subs subscribers failed"
}

# publish BOUND-SECS EXTRA-ARGS...: runs the publisher in the foreground
# (bounded by its own --count/--duration/--max-seconds, and by `timeout
# BOUND-SECS` as a backstop); leaves its JSON summary in PUB_JSON.
publish() {
    local plog; plog=$(mktemp "${TMPDIR:-/tmp}/ssed-bench-pub.XXXXXX"); TMPDIRS+=("$plog" "$plog.err")
    local bound=$1; shift
    timeout --signal=TERM --kill-after=5 "$bound" \
        "$BENCH" publish --addr "127.0.0.1:$SERVER_PORT" --path /events/bench "${BENCH_TLS[@]}" "$@" >"$plog" 2>"$plog.err" &
    local p=$!; PIDS+=("$p")
    wait "$p" || log "warning: publisher exited with status $? ($(tail -c 300 "$plog.err"))"
    stop "$p"
    PUB_JSON=$(summary_json "$plog")
}

# drain: after publishing, wait until the subscriber process is done or the
# server has stopped working (CPU unchanged over 0.4 s: every queued event
# written), at most 60 s. Leaves in BUSY_END the last moment the server was
# seen working, which ends the phase's wall time.
drain() {
    local i c0 c1 idle=0
    c0=$(measured_cpu_ticks); BUSY_END=$(now_s)
    for i in $(seq 300); do
        alive "$SUB_PID" || { BUSY_END=$(now_s); return 0; }
        sleep 0.2
        c1=$(measured_cpu_ticks)
        if [ "$c1" -gt "$c0" ]; then BUSY_END=$(now_s); idle=0; else idle=$((idle + 1)); fi
        [ $idle -ge 2 ] && return 0
        c0=$c1
    done
}

# jq helpers shared by the result lines: CPU per delivered event, rounded to ns.
JQ_DEFS='def per($x; $n): if ($n // 0) > 0 then ($x / $n * 1000 | round) / 1000 else null end;'

phase_steady() {
    local s=$1
    start_server "$s" 600
    # Exits by itself once every connection has all K events (or at the bound).
    start_subscribers --expect-events "$events" --max-seconds $((events / rate + 300))
    mark_start
    publish $((events / rate * 3 + 60)) --count "$events" --rate "$rate" --max-seconds $((events / rate * 3 + 30))
    drain
    mark_end "$BUSY_END"
    sleep 1   # let the subscribers read what is still in flight
    stop "$SUB_PID"; stop_server
    jq -nc --arg s "$s" --argjson n "$subs" --argjson k "$events" --argjson r "$rate" --argjson m "$MEAS" --argjson tls "$TLS_JSON" \
        --argjson sub "$(summary_json "$SUB_LOG")" --argjson pub "${PUB_JSON:-null}" "$JQ_DEFS"'
        {bench:"fanout",phase:"steady",server:$s,tls:$tls,subscribers:$n,events:$k,rate:$r,
         established:$sub.established, published:$pub.published,
         delivered:$sub.events, expected:(($pub.published // 0) * ($sub.established // 0)),
         latency_us:$sub.latency_us, last_subscriber_latency_us:$sub.last_subscriber_latency_us}
        + $m + {cpu_us_per_delivery:per($m.server_cpu_us; $sub.events),
                user_us_per_delivery:per($m.server_user_us; $sub.events),
                sub_summary:$sub, pub_summary:$pub}' >>"$out"
}

phase_saturate() {
    local s=$1
    start_server "$s" 600
    start_subscribers --hold $((sat_s + 600)) --max-seconds $((sat_s + 900))
    mark_start
    # --count is only a bound here: --duration ends it.
    publish $((sat_s + 60)) --count 100000000 --rate 0 --duration "$sat_s" --pipeline "$pipeline" --max-seconds $((sat_s + 30))
    drain
    mark_end "$BUSY_END"
    sleep 1   # let the subscribers read what is still in flight
    stop "$SUB_PID"; stop_server
    jq -nc --arg s "$s" --argjson n "$subs" --argjson secs "$sat_s" --argjson w "$pipeline" --argjson m "$MEAS" --argjson tls "$TLS_JSON" \
        --argjson sub "$(summary_json "$SUB_LOG")" --argjson pub "${PUB_JSON:-null}" "$JQ_DEFS"'
        {bench:"fanout",phase:"saturate",server:$s,tls:$tls,subscribers:$n,publish_seconds:$secs,pipeline:$w,
         established:$sub.established, published:$pub.published, publish_errors:$pub.errors,
         delivered:$sub.events,
         published_per_s:(($pub.published // 0) / $secs | round),
         delivered_per_s:(($sub.events // 0) / $m.wall_s | round),
         delivery_ratio:per($sub.events // 0; ($pub.published // 0) * ($sub.established // 0))}
        + $m + {cpu_us_per_delivery:per($m.server_cpu_us; $sub.events),
                user_us_per_delivery:per($m.server_user_us; $sub.events),
                latency_us:$sub.latency_us, sub_summary:$sub, pub_summary:$pub}' >>"$out"
}

phase_heartbeat() {
    local s=$1
    start_server "$s" 1
    start_subscribers --hold $((hb_s + 300)) --max-seconds $((hb_s + 600))
    local ready_at stop_at; ready_at=$(now_s)
    sleep 2   # past the connection ramp and the first, ragged heartbeat
    mark_start
    nap "$hb_s"
    mark_end
    stop_at=$(now_s)
    stop "$SUB_PID"; stop_server
    # Heartbeats in the CPU window: established x window seconds at 1/s
    # (nominal). Check: the bench's count per connection per second between
    # "ready" and the stop (slightly high: it includes heartbeats that arrived
    # during the connection ramp); well below 1 means the server fell behind.
    jq -nc --arg s "$s" --argjson n "$subs" --argjson m "$MEAS" --argjson tls "$TLS_JSON" \
        --argjson held "$(awk -v a="$ready_at" -v b="$stop_at" 'BEGIN {printf "%.3f", b - a}')" \
        --argjson sub "$(summary_json "$SUB_LOG")" "$JQ_DEFS"'
        (($sub.established // 0) * $m.wall_s) as $hb
        | {bench:"fanout",phase:"heartbeat",server:$s,tls:$tls,subscribers:$n,heartbeat_s:1,
           established:$sub.established, heartbeats_in_window:($hb | round),
           heartbeats_per_conn_per_s:per($sub.heartbeats // 0; ($sub.established // 0) * $held)}
        + $m + {cpu_us_per_heartbeat:per($m.server_cpu_us; $hb),
                user_us_per_heartbeat:per($m.server_user_us; $hb), sub_summary:$sub}' >>"$out"
}

for s in "${todo[@]}"; do
    for p in $(split_csv "$phases"); do
        log "$s: $p (N=$subs)"
        "phase_$p" "$s"
    done
done
ln -sf "$(basename "$out")" "$RESULTS/fanout-latest.jsonl"

echo
echo "Fan-out to $subs subscribers on one topic$([ "$TLS" = 0 ] || echo ", over TLS"). CPU = the server process's utime+stime"
echo "(/proc/PID/stat, 1 tick = $((1000000 / CLK_TCK)) us), per delivered event; user = utime alone."
[ "$TLS" = 0 ] || echo "nginx-tls: the CPU of nginx's workers + ssed's (each in server_cpu_parts_us)."
# table JQ-FILTER HEADER...: print the selected rows as aligned columns.
table() {
    local filter=$1; shift
    { printf '%s\t' "$@"; echo; jq -r "$filter | map(tostring) | @tsv" "$out"; } | column -t -s $'\t'
}
if jq -se 'any(.phase=="steady")' "$out" >/dev/null; then
    echo; echo "steady: $events events at $rate/s; latency in us; last = the subscriber served last"
    table 'select(.phase=="steady") | [.server, "\(.delivered)/\(.expected)", .latency_us.p50, .latency_us.p99, .latency_us.max,
           .last_subscriber_latency_us.p50, .last_subscriber_latency_us.max, .cpu_us_per_delivery, .user_us_per_delivery]' \
        server delivered/expected p50 p99 max last_p50 last_max cpu_us/ev user_us/ev
fi
if jq -se 'any(.phase=="saturate")' "$out" >/dev/null; then
    echo; echo "saturate: publish as fast as possible for $sat_s s (pipeline $pipeline)"
    table 'select(.phase=="saturate") | [.server, .published_per_s, .delivered_per_s, .delivery_ratio, .latency_us.p50, .cpu_us_per_delivery, .user_us_per_delivery]' \
        server published/s delivered/s delivered/expected p50_us cpu_us/ev user_us/ev
fi
if jq -se 'any(.phase=="heartbeat")' "$out" >/dev/null; then
    echo; echo "heartbeat: every 1 s for $hb_s s to idle subscribers"
    table 'select(.phase=="heartbeat") | [.server, .heartbeats_in_window, .server_cpu_us, .heartbeats_per_conn_per_s, .cpu_us_per_heartbeat, .user_us_per_heartbeat]' \
        server heartbeats cpu_us hb/conn/s cpu_us/hb user_us/hb
fi
echo "results: $out"
