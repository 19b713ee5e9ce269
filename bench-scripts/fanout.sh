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
#   --topics multi     several topics per subscriber, ssed only (the default server then):
#                      per phase (steady, saturate; the default phases then) two sub-runs, each
#                      on a fresh server, in the same session, both with events published in
#                      turn to all and group/k, k cycling 0..99: "single", N subscribers of
#                      /events/all (so the group events reach nobody); "multi", N subscribers
#                      each of 3 topics (/events?topic=all&topic=group/{i%100}&topic=user/{i}).
#                      The same publisher in both: at saturation, how many events a write
#                      carries depends on how fast events come to all, which must not differ.
#                      CPU per delivery counts the events the subscribers received (an event
#                      to group/k reaches N/100 of them in multi, one to all reaches N), and
#                      each run gives the ratio multi / single per phase; the bar is <= 1.2.
#                      --events defaults to 200 then and must be a multiple of 200 (every group
#                      gets as many); the order of the two sub-runs alternates from run to run
#   --runs R           with --topics multi: runs, each with both sub-runs; the median ratio is
#                      reported (default 1)
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

servers= subs=10000 events= rate=5 sat_s=10 hb_s=10
phases= processes= build=1 pipeline=16 topics=single runs=1
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
        --topics) topics=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        --tls) use_tls; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
case $topics in single|multi) ;; *) die "--topics single|multi" ;; esac
MULTI=$([ "$topics" = multi ] && echo true || echo false)
MULTI_SUB_PATH='/events?topic=all&topic=group/{i%100}&topic=user/{i}'
if [ "$MULTI" = true ]; then
    # Several topics on one connection is ssed's own interface: the others have no such request.
    : "${servers:=ssed}" "${phases:=steady,saturate}" "${events:=200}"
    for s in $(split_csv "$servers"); do
        case $s in ssed|ssed-1w) ;; *) die "--topics multi measures ssed only (not $s: one topic per request): give --servers ssed" ;; esac
    done
    for p in $(split_csv "$phases"); do
        [ "$p" != heartbeat ] || die "--topics multi: phases steady,saturate only (the ratio is of CPU per delivered event)"
    done
    [[ $events =~ ^[0-9]+$ ]] && [ $((events % 200)) = 0 ] && [ "$events" -gt 0 ] \
        || die "--topics multi: --events must be a multiple of 200 (half to all, half over the 100 groups: as many to each group)"
else
    [ "$runs" = 1 ] || die "--runs is for --topics multi (the single-topic figures are one run per server and phase)"
fi
: "${phases:=steady,saturate,heartbeat}" "${events:=100}"
if [ -z "$servers" ]; then if [ "$TLS" = 1 ]; then servers=$TLS_SERVERS; else servers=$ALL_SERVERS; fi; fi
for v in subs events rate sat_s hb_s pipeline runs; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number"
done
[ "$runs" -ge 1 ] || die "--runs must be >= 1"
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
    --arg topics "$topics" --argjson runs "$runs" --arg mpath "$MULTI_SUB_PATH" --argjson load "$(awk '{printf "[%s,%s,%s]", $1, $2, $3}' /proc/loadavg)" \
    '{bench:"fanout",kind:"meta",stamp:$stamp,command:$command,mem_total_kb:$mem,kernel:$kernel,commit:$commit,cores:$cores,servers:$servers,subscribers:$subs,
      steady_events:$events,steady_rate:$rate,saturate_s:$sat,saturate_pipeline:$w,heartbeat_window_s:$hb,clk_tck:$tck,tls:$tls,
      topics:$topics,loadavg_before:$load}
      + if $topics == "multi" then {runs:$runs,multi_path:$mpath,multi_publish:["/events/all","/events/group/{i%100}"],
                                   single_path:"/events/all",single_publish:["/events/all","/events/group/{i%100}"],
                                   ratio_bar:1.2} else {} end' >"$out"

# What the subscribers subscribe to and where events go: set by use_variant in multi mode.
SUB_PATH=/events/bench PUB_PATHS=(--path /events/bench) EXPECT_PER_SUB=$events VARIANT=single RUN=1
# use_variant single|multi: --topics multi's two sub-runs (see --help).
use_variant() {
    VARIANT=$1
    PUB_PATHS=(--path /events/all --path '/events/group/{i%100}')   # the same in both
    if [ "$1" = single ]; then
        SUB_PATH=/events/all EXPECT_PER_SUB=$((events / 2))   # every event to all
    else
        SUB_PATH=$MULTI_SUB_PATH
        EXPECT_PER_SUB=$((events / 2 + events / 200))   # every event to all, 1 in 100 to its group
    fi
}

SUB_PID= SUB_LOG=
# start_subscribers EXTRA-ARGS...: N subscribers on $SUB_PATH; waits for "ready".
start_subscribers() {
    SUB_LOG=$(mktemp "${TMPDIR:-/tmp}/ssed-bench-sub.XXXXXX"); TMPDIRS+=("$SUB_LOG" "$SUB_LOG.err")
    "$BENCH" subscribe --addr "127.0.0.1:$SERVER_PORT" --path "$SUB_PATH" --connections "$subs" \
        --connect-timeout 120 --heartbeat-event keep-alive ${processes:+--processes "$processes"} "${BENCH_TLS[@]}" "$@" >"$SUB_LOG" 2>"$SUB_LOG.err" &
    SUB_PID=$!; PIDS+=("$SUB_PID")
    wait_ready "$SUB_LOG" "$SUB_PID" 300
    local f; f=$(ready_field "$SUB_LOG" failed)
    [ "$f" = 0 ] || log "warning: $f of $subs subscribers failed"
    [ "$(ready_field "$SUB_LOG" established)" != 0 ] || die "no subscriber established on $SUB_PATH$(
        [ "$VARIANT" = single ] || echo ": does this build serve several topics on one connection?")"
}

# publish BOUND-SECS EXTRA-ARGS...: runs the publisher in the foreground
# (bounded by its own --count/--duration/--max-seconds, and by `timeout
# BOUND-SECS` as a backstop); leaves its JSON summary in PUB_JSON.
publish() {
    local plog; plog=$(mktemp "${TMPDIR:-/tmp}/ssed-bench-pub.XXXXXX"); TMPDIRS+=("$plog" "$plog.err")
    local bound=$1; shift
    timeout --signal=TERM --kill-after=5 "$bound" \
        "$BENCH" publish --addr "127.0.0.1:$SERVER_PORT" "${PUB_PATHS[@]}" "${BENCH_TLS[@]}" "$@" >"$plog" 2>"$plog.err" &
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

# jq helpers shared by the result lines: CPU per delivered event, rounded to ns; deliveries
# expected of P published events and E subscribers, and what a multi-mode row carries besides
# (--topics multi: events in turn to all (every subscriber) and group/k, k = 0, 1, ..., which
# reaches subscribers i = k mod 100 in the multi sub-run, nobody in the single one; counted as
# if all N subscribers were established, which E says they were).
JQ_DEFS='def per($x; $n): if ($n // 0) > 0 then ($x / $n * 1000 | round) / 1000 else null end;
def expected($p; $e):
    if $multi | not then $p * $e else
        (($p + 1) / 2 | floor) as $all | ($p / 2 | floor) as $g
        | $all * $e + if $variant == "single" then 0 else
            [range(0; 100)] | map((($g / 100 | floor) + (if . < $g % 100 then 1 else 0 end))
                                  * (($n / 100 | floor) + (if . < $n % 100 then 1 else 0 end))) | add end end;
def variant: if $multi then {kind:"run",topics:$variant,run:$run,sub_path:$sub_path} else {} end;'
# The variables JQ_DEFS uses (with --argjson n, which every row has).
jq_variant() { JQ_VARIANT=(--arg variant "$VARIANT" --argjson multi "$MULTI" --argjson run "$RUN" --arg sub_path "$SUB_PATH"); }

phase_steady() {
    local s=$1
    start_server "$s" 600
    # Exits by itself once every connection has all K events (or at the bound).
    start_subscribers --expect-events "$EXPECT_PER_SUB" --max-seconds $((events / rate + 300))
    mark_start
    publish $((events / rate * 3 + 60)) --count "$events" --rate "$rate" --max-seconds $((events / rate * 3 + 30))
    drain
    mark_end "$BUSY_END"
    sleep 1   # let the subscribers read what is still in flight
    stop "$SUB_PID"; stop_server
    jq_variant
    jq -nc --arg s "$s" --argjson n "$subs" --argjson k "$events" --argjson r "$rate" --argjson m "$MEAS" --argjson tls "$TLS_JSON" \
        --argjson sub "$(summary_json "$SUB_LOG")" --argjson pub "${PUB_JSON:-null}" "${JQ_VARIANT[@]}" "$JQ_DEFS"'
        {bench:"fanout",phase:"steady",server:$s,tls:$tls,subscribers:$n,events:$k,rate:$r}
        + variant + {
         established:$sub.established, published:$pub.published,
         delivered:$sub.events, expected:expected($pub.published // 0; $sub.established // 0),
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
    jq_variant
    jq -nc --arg s "$s" --argjson n "$subs" --argjson secs "$sat_s" --argjson w "$pipeline" --argjson m "$MEAS" --argjson tls "$TLS_JSON" \
        --argjson sub "$(summary_json "$SUB_LOG")" --argjson pub "${PUB_JSON:-null}" "${JQ_VARIANT[@]}" "$JQ_DEFS"'
        {bench:"fanout",phase:"saturate",server:$s,tls:$tls,subscribers:$n,publish_seconds:$secs,pipeline:$w}
        + variant + {
         established:$sub.established, published:$pub.published, publish_errors:$pub.errors,
         delivered:$sub.events}
        + if $multi then {expected:expected($pub.published // 0; $sub.established // 0)} else {} end + {
         published_per_s:(($pub.published // 0) / $secs | round),
         delivered_per_s:(($sub.events // 0) / $m.wall_s | round),
         delivery_ratio:per($sub.events // 0; expected($pub.published // 0; $sub.established // 0))}
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
    jq_variant
    # Heartbeats in the CPU window: established x window seconds at 1/s
    # (nominal). Check: the bench's count per connection per second between
    # "ready" and the stop (slightly high: it includes heartbeats that arrived
    # during the connection ramp); well below 1 means the server fell behind.
    jq -nc --arg s "$s" --argjson n "$subs" --argjson m "$MEAS" --argjson tls "$TLS_JSON" \
        --argjson held "$(awk -v a="$ready_at" -v b="$stop_at" 'BEGIN {printf "%.3f", b - a}')" \
        --argjson sub "$(summary_json "$SUB_LOG")" "${JQ_VARIANT[@]}" "$JQ_DEFS"'
        (($sub.established // 0) * $m.wall_s) as $hb
        | {bench:"fanout",phase:"heartbeat",server:$s,tls:$tls,subscribers:$n,heartbeat_s:1,
           established:$sub.established, heartbeats_in_window:($hb | round),
           heartbeats_per_conn_per_s:per($sub.heartbeats // 0; ($sub.established // 0) * $held)}
        + $m + {cpu_us_per_heartbeat:per($m.server_cpu_us; $hb),
                user_us_per_heartbeat:per($m.server_user_us; $hb), sub_summary:$sub}' >>"$out"
}

if [ "$MULTI" = false ]; then
    for s in "${todo[@]}"; do
        for p in $(split_csv "$phases"); do
            log "$s: $p (N=$subs)"
            "phase_$p" "$s"
        done
    done
else
    # Runs outermost (a noisy minute spoils one run, not one variant); within a run, each phase
    # on the two variants back to back, their order alternating from run to run.
    for RUN in $(seq "$runs"); do
        order=(single multi); [ $((RUN % 2)) = 1 ] || order=(multi single)
        for s in "${todo[@]}"; do
            for p in $(split_csv "$phases"); do
                for v in "${order[@]}"; do
                    use_variant "$v"
                    log "run $RUN/$runs: $s: $p, $v (N=$subs, load $(cut -d' ' -f1-3 /proc/loadavg))"
                    "phase_$p" "$s"
                    log "  -> $(tail -1 "$out" | jq -r '"\(.delivered)/\(.expected) delivered, \(.cpu_us_per_delivery) us CPU per delivery"')"
                done
                ratio=$(jq -sc --arg s "$s" --arg p "$p" --argjson run "$RUN" '
                    map(select(.kind == "run" and .server == $s and .phase == $p and .run == $run)) as $rows
                    | ($rows | map(select(.topics == "single"))[0]) as $one | ($rows | map(select(.topics == "multi"))[0]) as $three
                    | {bench:"fanout",kind:"ratio",server:$s,phase:$p,run:$run,subscribers:$one.subscribers,
                       single_cpu_us_per_delivery:$one.cpu_us_per_delivery,multi_cpu_us_per_delivery:$three.cpu_us_per_delivery,
                       single_delivered:$one.delivered,multi_delivered:$three.delivered,
                       ratio:(if ($one.cpu_us_per_delivery // 0) > 0 and $three.cpu_us_per_delivery != null
                              then ($three.cpu_us_per_delivery / $one.cpu_us_per_delivery * 1000 | round) / 1000 else null end)}' \
                    "$out")
                echo "$ratio" >>"$out"
            done
        done
    done
    for s in "${todo[@]}"; do
        for p in $(split_csv "$phases"); do
            # Medians in jq: lib.sh's median rounds a mean of two to 0.1, too coarse for these.
            med=$(jq -sc --arg s "$s" --arg p "$p" --argjson n "$subs" --argjson load "$(awk '{printf "[%s,%s,%s]", $1, $2, $3}' /proc/loadavg)" '
                def med: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor]
                               else ((.[length / 2 - 1] + .[length / 2]) / 2 * 1000 | round) / 1000 end;
                map(select(.kind == "ratio" and .server == $s and .phase == $p and .ratio != null)) as $rs
                | if ($rs | length) == 0 then empty else
                  ($rs | map(.ratio) | med) as $r
                  | {bench:"fanout",kind:"median",server:$s,phase:$p,subscribers:$n,runs:($rs|length),ratio:$r,
                     ratio_range:[($rs|map(.ratio)|min),($rs|map(.ratio)|max)],
                     single_cpu_us_per_delivery:($rs|map(.single_cpu_us_per_delivery)|med),
                     multi_cpu_us_per_delivery:($rs|map(.multi_cpu_us_per_delivery)|med),
                     bar:1.2,pass:($r <= 1.2),loadavg_after:$load} end' "$out")
            if [ -n "$med" ]; then echo "$med" >>"$out"; else log "warning: $s $p: no ratio (a sub-run delivered nothing)"; fi
        done
    done
fi
ln -sf "$(basename "$out")" "$RESULTS/fanout-latest.jsonl"

# table JQ-FILTER HEADER...: print the selected rows as aligned columns.
table() {
    local filter=$1; shift
    { printf '%s\t' "$@"; echo; jq -r "$filter | map(tostring) | @tsv" "$out"; } | column -t -s $'\t'
}
if [ "$MULTI" = true ]; then
    echo
    echo "Fan-out to $subs subscribers: one topic each (single: all) against three each (multi: all,"
    echo "group/<i mod 100>, user/<i>); in both, events in turn to all and group/k. CPU = the server's"
    echo "utime+stime (/proc/PID/stat, 1 tick = $((1000000 / CLK_TCK)) us) per event the subscribers received."
    echo
    table 'select(.kind == "run") | [.run, .server, .phase, .topics, "\(.delivered)/\(.expected)", .latency_us.p50, .latency_us.p99,
           .server_cpu_us, .cpu_us_per_delivery]' \
        run server phase topics delivered/expected p50_us p99_us cpu_us cpu_us/ev
    echo
    echo "CPU per delivered event, multi / single (bar: <= 1.2)"
    table 'select(.kind == "median") | [.server, .phase, .single_cpu_us_per_delivery, .multi_cpu_us_per_delivery, .ratio,
           "\(.ratio_range[0])..\(.ratio_range[1])", .runs, (if .pass then "PASS" else "FAIL" end)]' \
        server phase single_us/ev multi_us/ev ratio range runs verdict
    echo "results: $out"
    exit 0
fi
echo
echo "Fan-out to $subs subscribers on one topic$([ "$TLS" = 0 ] || echo ", over TLS"). CPU = the server process's utime+stime"
echo "(/proc/PID/stat, 1 tick = $((1000000 / CLK_TCK)) us), per delivered event; user = utime alone."
[ "$TLS" = 0 ] || echo "nginx-tls: the CPU of nginx's workers + ssed's (each in server_cpu_parts_us)."
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
