#!/usr/bin/env bash
# abuse.sh: does ssed keep serving honest subscribers while hostile clients attack it?
# One phase per attack, each on a fresh ssed (so one attack's leftovers, e.g. a grown heap or
# thousands of topics, never bill the next), each with the same honest load:
#   N subscribers of /events/bench (ssed-bench, --expect-events) and one publisher at R events/s
#   for S seconds (body "t=<unix micros>"), which gives delivery latency p50/p99/max and the
#   exact count of events delivered against published x N.
# Phases (the attack clients are bench-scripts/attack.py, run at nice 10 so that the two
# cores go first to ssed and the honest clients: the figures show what ssed does with the
# hostile traffic, not how much CPU Python needs to produce it):
#   none             no attack: the reference for the latency bar (always run, first)
#   pipeline         50 connections each writing 200 KB of pipelined `GET /metrics`, never reading
#   garbage          200 subscribers (GET /events/x) that keep writing garbage: 256 KB every
#                    10 ms each, whenever the socket takes it (big writes: cheap for the attacker,
#                    so ssed's receive buffers stay full even though the attacker runs niced)
#   trickle-cl       100 POSTs with Content-Length: 60000, the body 4 bytes every 0.5 s
#   trickle-chunked  100 POSTs with Transfer-Encoding: chunked, a 1-byte chunk every 0.5 s
#   slowloris        5,000 connections sending a partial request head, one byte a second
#   oneshot          100,000 `GET /events/<random>` then close, 64 in flight per process, 2 processes
#   storm            10,000 subscribers at once with Last-Event-ID = the first of 200 older events
#                    on the honest topic (so every one of them replays 200 events)
#   flood            ssed with --max-connections 3000, then 6,000 connections (the publisher
#                    connects first; the flood starts while it publishes)
# With --tls only (ssed serves HTTPS; the attackers are the same, niced, loopback only):
#   handshake-storm  full TLS handshakes as fast as 2 attacker processes can, 100 in flight each,
#                    40,000 at most (--quick: 20,000), until the honest load drained: connect,
#                    handshake, then every other one sends `GET /healthz` and closes on the
#                    answer, the others send close_notify at once and close
#   tls-garbage      200 connections sending non-TLS bytes to the TLS port, in turn: random
#                    bytes (more every 0.5 s), a plaintext `GET /events/x`, a handshake record
#                    header followed by random bytes; each one ssed closes is replaced 50 ms
#                    later (~4,000 connections a second; replaced at once, one Python process
#                    made 15,000 a second, 100,000 per process in under 7 s, leaving 60 s of
#                    TIME_WAIT in the kernel behind)
#   tls-stall        5,000 connections that send half a real ClientHello (every other one:
#                    nothing at all) and stall; ssed must close them at --header-timeout
#                    (10 s), after which they are replaced. As with slowloris, only the full
#                    run (15 s of publishing) gets there: --quick shows them held, not closed.
# Trickle, slowloris, tls-garbage, tls-stall: a connection the server closes is replaced, as a
# real attacker would.
# Order within a phase: ssed, honest subscribers (ready), RSS settled = "before", attack
# (ready: its connections are open), publisher, drain (every subscriber has every event, or
# 30 s), attack stopped. Measured over that window: ssed's peak VmRSS (sampled every 0.1 s
# from /proc/PID/status) minus "before", and its utime+stime (/proc/PID/stat).
# Bars, per attack phase (PASS/FAIL each, a phase passes if all do):
#   latency  honest p99 <= 2 x the no-attack p99 + 50 ms
#   rss      peak RSS growth <= 16 KiB per hostile connection (oneshot: per one-shot connection;
#            also reported per 1,000 topics). Why 16 KiB: what ssed holds for a connection in
#            the middle of a request is that request (a head may legitimately be 8 KiB), at most
#            2 KiB of unsent answers plus the one answer that crossed that cap (a /metrics answer
#            is ~5 KiB), and its small state: about 15 KiB at worst.
#   alive    ssed still running and no "panicked" in its stderr
#   missed   every honest subscriber got every event the publisher was to publish (an
#            attack that stalls the publisher makes events go missing too)
# ssed's flags: --heartbeat 5 --heartbeat-event keep-alive, plus --max-topics 10000 if this
# build's --help lists it (so the script works against any build).
#
# --tls: the whole run over HTTPS. ssed gets --tls-cert/--tls-key (build/tls/server.pem and
# server.key, the certificate memory.sh and fanout.sh use, made by build-baselines.sh tls);
# the honest subscribers and the publisher are ssed-bench --tls --ca build/tls/ca.pem; every
# attack above speaks TLS (attack.py --tls: Python's ssl module, non-blocking handshakes in
# the same event loop; the attackers do not verify the certificate), so each hostile
# connection pays for a full handshake first and holds a TLS session on ssed's side. Every
# phase keeps its meaning, with three differences: an attack is "ready" once its connections
# are past their handshakes; oneshot makes 20,000 connections (--quick 8,000), not 100,000,
# each a full handshake (its per-connection figures divide by the ones actually done if
# fewer); flood's connections past --max-connections are closed at once, without a 503
# (ssed does not spend a handshake on a refusal). The three TLS phases above are added.
# The RSS bar per hostile connection over TLS (the worker's TLS buffers are per thread, not
# per connection, and already there for the honest subscribers):
#   52 KiB for the HTTP-level attacks above: the 16 KiB of a plain connection, its TLS session
#      (~3.9 KB idle: rustls' unbuffered connection) and what ssed keeps of TLS by design for
#      a connection in the middle of a request (src/tls.rs), 32 KiB: a record (16 KiB) of
#      decrypted input the request parser has not taken yet, or the start of the next record,
#      and a record of ciphertext the socket did not take. (A first small run measured
#      pipeline at ~34 KB per connection over TLS, ~15 KB in plain HTTP.)
#   24 KiB for handshake-storm, tls-garbage and tls-stall, whose connections never get past
#      the handshake or ask one small request after it: the 16 KiB of a plain connection,
#      the session, and while a handshake is under way its state (transcript, key exchange)
#      and whatever part of a record has arrived (half a ClientHello is ~0.3 KB).
#      handshake-storm is billed per connection in flight (2 x 100 = 200): its throughput is
#      thousands of connections that each come and go, and only those in flight at once may
#      hold memory.
# Each phase's JSON line (with or without --tls) also has what ssed counted of the attack:
# the deltas by reason of ssed_tls_handshake_failures_total (tls_handshake_failures) and
# ssed_requests_rejected_total (requests_rejected) from just before the attack to 1 s after
# it was stopped, scraped from /metrics (attack.py metrics), and tls_handshake_failures_
# before_stop, the same up to just before the attack was stopped (stopping it closes its
# connections: a stalled handshake then counts as "closed", not "timeout").
#
# Options:
#   --phases a,b,c     subset of none,pipeline,garbage,trickle-cl,trickle-chunked,slowloris,
#                      oneshot,storm,flood, and with --tls handshake-storm,tls-garbage,tls-stall
#                      (default: all; none is always added)
#   --tls              over HTTPS (see above); needs a ssed whose --help lists --tls-cert
#   --quick            6 s of publishing instead of 15 (whatever --seconds says), 20,000
#                      one-shot connections (--tls: 8,000), a 5,000-subscriber storm, 20,000
#                      handshakes at most (~2 min instead of ~5; --tls ~5 instead of ~9). 6 s
#                      is under ssed's 10 s header timeout: trickle, slowloris and tls-stall
#                      connections are then never closed and replaced, so only the full run
#                      tests that.
#   --subscribers N    honest subscribers (default 1000)
#   --rate R           honest events per second (default 20)
#   --seconds S        seconds of publishing per phase (default 15)
#   --no-build         do not run cargo build
#   -h, --help
# Output: a table on stdout; one JSON line per phase in bench-scripts/results/abuse-<time>.jsonl
# (and abuse-latest.jsonl), after a meta line (command, commit, date, machine), or under
# $SSED_BENCH_RESULTS if set. Exit status 0 even when bars fail: the table says which.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
invocation="bench-scripts/abuse.sh $*"

ALL_PHASES=none,pipeline,garbage,trickle-cl,trickle-chunked,slowloris,oneshot,storm,flood
TLS_PHASES=handshake-storm,tls-garbage,tls-stall
phases= subs=1000 rate=20 seconds=15 quick=0 build=1
BOUND_KIB=16            # the stated RSS bar per hostile connection (see the header)
TLS_PHASE_BOUND_KIB=24  # with --tls: handshake-storm, tls-garbage, tls-stall (see the header)
while [ $# -gt 0 ]; do
    case $1 in
        --phases) phases=$2; shift 2 ;;
        --tls) use_tls; shift ;;
        --quick) quick=1; shift ;;
        --subscribers) subs=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
if [ "$quick" = 1 ]; then seconds=6; oneshot_total=20000; storm_conns=5000; hs_total=20000
else oneshot_total=100000; storm_conns=10000; hs_total=40000; fi
if [ "$TLS" = 1 ]; then
    # Each one-shot connection is a full handshake from Python: 100,000 would outlast the phase.
    oneshot_total=$((quick ? 8000 : 20000))
    BOUND_KIB=52        # + 4 KiB of TLS session + a 16 KiB record each way (see the header)
    KNOWN_PHASES=$ALL_PHASES,$TLS_PHASES
else
    KNOWN_PHASES=$ALL_PHASES
fi
phases=${phases:-$KNOWN_PHASES}
for v in subs rate seconds; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "--$v must be a positive whole number"
done
[ "$subs" -le 19000 ] || die "--subscribers: 1..19000 (20,000 open files per process)"
todo=(none)
for p in $(split_csv "$phases"); do
    case ,$KNOWN_PHASES, in
        *,"$p",*) ;;
        *) case ,$TLS_PHASES, in
               *,"$p",*) die "phase $p attacks ssed's TLS: run with --tls" ;;
               *) die "unknown phase $p (see --help)" ;;
           esac ;;
    esac
    [ "$p" = none ] || todo+=("$p")
done
events=$((rate * seconds))
command -v python3 >/dev/null || die "python3 is needed (attack.py)"

install_trap
need_tools
if [ "$build" = 1 ]; then
    log "cargo build --release (ssed, ssed-bench)"
    (cd "$ROOT" && cargo build --release --quiet --bin ssed --bin ssed-bench) \
        || die "cargo build of ssed / ssed-bench failed"
fi
[ -x "$SSED" ] || die "$SSED missing (cargo build --release --bin ssed)"
[ -x "$BENCH" ] || die "$BENCH missing (cargo build --release --bin ssed-bench)"
if [ "$TLS" = 1 ]; then
    ssed_has_tls || die "--tls: this ssed build has no --tls-cert (see $SSED --help)"
    if ! [ -s "$TLS_DIR/ca.pem" ] || ! [ -s "$TLS_DIR/server.pem" ] || ! [ -s "$TLS_DIR/server.key" ]; then
        [ "$build" = 1 ] || die "--tls: no test certificates in $TLS_DIR (run bench-scripts/build-baselines.sh tls, or drop --no-build)"
        log "build-baselines.sh tls (the test CA and localhost certificate in $TLS_DIR)"
        "$BS/build-baselines.sh" tls >&2 || true
        [ -s "$TLS_DIR/ca.pem" ] || die "--tls: build-baselines.sh tls made no certificates in $TLS_DIR"
    fi
fi
ATT_TLS=(); [ "$TLS" = 0 ] || ATT_TLS=(--tls)
TLS_JSON=$([ "$TLS" = 1 ] && echo true || echo false)
# Flags only some builds have: use them only if this build's --help lists them.
SSED_EXTRA=()
if "$SSED" --help 2>/dev/null | grep -q -- '--max-topics'; then SSED_EXTRA+=(--max-topics 10000); fi

mkdir -p "$RESULTS"
out=$(results_file abuse)
stamp=$(basename "$out" .jsonl); stamp=${stamp#abuse-}
jq -nc --arg stamp "$stamp" --arg command "$invocation" --argjson mem "$(mem_total_kb)" --arg kernel "$(uname -r)" \
    --arg commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --argjson cores "$(nproc)" --arg phases "${todo[*]}" --argjson subs "$subs" --argjson events "$events" --argjson rate "$rate" \
    --argjson tck "$CLK_TCK" --argjson bound "$BOUND_KIB" --arg extra "${SSED_EXTRA[*]}" --argjson quick "$quick" --argjson tls "$TLS_JSON" --argjson tlsbound "$TLS_PHASE_BOUND_KIB" \
    '{bench:"abuse",kind:"meta",stamp:$stamp,command:$command,date:$date,mem_total_kb:$mem,kernel:$kernel,commit:$commit,cores:$cores,
      phases:$phases,subscribers:$subs,events:$events,rate:$rate,quick:($quick==1),clk_tck:$tck,rss_bound_kib_per_conn:$bound,ssed_extra_flags:$extra,tls:$tls,
      rss_bound_kib_per_conn_tls_phases:(if $tls then $tlsbound else null end)}' >"$out"

# The honest subscribers: they stop by themselves once each has every event.
start_subscribers() {
    SUB_LOG=$(mktemp "${TMPDIR:-/tmp}/ssed-abuse-sub.XXXXXX"); TMPDIRS+=("$SUB_LOG" "$SUB_LOG.err")
    "$BENCH" subscribe --addr "127.0.0.1:$SERVER_PORT" --path /events/bench --connections "$subs" \
        --connect-timeout 60 --heartbeat-event keep-alive --expect-events "$events" "${BENCH_TLS[@]}" \
        --max-seconds $((seconds + 300)) >"$SUB_LOG" 2>"$SUB_LOG.err" &
    SUB_PID=$!; PIDS+=("$SUB_PID")
    wait_ready "$SUB_LOG" "$SUB_PID" 120
    local f; f=$(ready_field "$SUB_LOG" failed)
    [ "$f" = 0 ] || log "warning: $f of $subs honest subscribers failed to connect"
}

start_publisher() {
    PUB_LOG=$(mktemp "${TMPDIR:-/tmp}/ssed-abuse-pub.XXXXXX"); TMPDIRS+=("$PUB_LOG" "$PUB_LOG.err")
    timeout --signal=TERM --kill-after=5 $((seconds * 3 + 60)) \
        "$BENCH" publish --addr "127.0.0.1:$SERVER_PORT" --path /events/bench --count "$events" --rate "$rate" "${BENCH_TLS[@]}" \
        --max-seconds $((seconds * 3 + 30)) >"$PUB_LOG" 2>"$PUB_LOG.err" &
    PUB_PID=$!; PIDS+=("$PUB_PID")
}
wait_publisher() {
    wait "$PUB_PID" || log "warning: publisher exited with status $? ($(tail -c 300 "$PUB_LOG.err"))"
    stop "$PUB_PID"
}

# start_attack MODE ARGS...: attack.py in the background; waits (at most 120 s) for its
# "ready" line, i.e. until its connections are open. ATT_PID, ATT_LOG.
start_attack() {
    ATT_LOG=$(mktemp "${TMPDIR:-/tmp}/ssed-abuse-att.XXXXXX"); TMPDIRS+=("$ATT_LOG" "$ATT_LOG.err")
    # --duration bounds the attack by itself; normally it is stopped once the honest load drained.
    nice -n 10 python3 "$BS/attack.py" "$1" --addr "127.0.0.1:$SERVER_PORT" "${ATT_TLS[@]}" --duration $((seconds + 150)) "${@:2}" \
        >"$ATT_LOG" 2>"$ATT_LOG.err" &
    ATT_PID=$!; PIDS+=("$ATT_PID")
    local end=$((SECONDS + 120))
    while [ $SECONDS -lt $end ]; do
        grep -q '^ready ' "$ATT_LOG" && return 0
        alive "$ATT_PID" || { log "warning: attack.py $1 exited before ready: $(tail -c 500 "$ATT_LOG.err")"; return 0; }
        sleep 0.1
    done
    log "warning: attack.py $1 not ready after 120 s; measuring anyway"
}

# RSS sampler: VmRSS of PID every 0.1 s; each new peak is appended to FILE (appended, not
# rewritten: stopping the sampler mid-write must not lose the peak). Read with peak_kb.
start_sampler() {
    local pid=$1 f=$2
    (
        peak=0
        while [ -r "/proc/$pid/status" ]; do
            while read -r k v _; do
                if [ "$k" = VmRSS: ]; then
                    if [ "$v" -gt "$peak" ]; then peak=$v; echo "$peak" >>"$f"; fi
                    break
                fi
            done <"/proc/$pid/status" 2>/dev/null || break
            sleep 0.1
        done
    ) &
    SAMPLER_PID=$!; PIDS+=("$SAMPLER_PID")
}

# The honest load's end: every subscriber has every event (ssed-bench exits), or 30 s more.
# Bounded by the clock, not by a count of polls: a loaded machine makes each poll slow.
drain() {
    local end=$((SECONDS + 30))
    while [ $SECONDS -lt $end ]; do alive "$SUB_PID" || return 0; sleep 0.1; done
    log "  honest subscribers still short of events 30 s after the last publish"
}

# scrape_counters: ssed's TLS handshake failures and rejected requests by reason, from
# /metrics (over TLS with --tls), as {"tls_handshake_failures":{..},"requests_rejected":{..}};
# null if the scrape failed (the phase goes on: these are for the record, not a bar).
scrape_counters() {
    timeout 15 python3 "$BS/attack.py" metrics --addr "127.0.0.1:$SERVER_PORT" "${ATT_TLS[@]}" 2>/dev/null \
        | jq -ce . 2>/dev/null || echo null
}

# How ssed's connections stand: established TCP connections on its port (server side).
established() { ss -Htn state established "( sport = :$SERVER_PORT )" 2>/dev/null | wc -l; }

# attack_args PHASE: the attack.py arguments; HOSTILE = the nominal hostile connection count.
attack_args() {
    case $1 in
        pipeline) HOSTILE=50; ATT=(pipeline --connections 50 --bytes 200000) ;;
        garbage) HOSTILE=200; ATT=(garbage --connections 200 --chunk 262144 --interval 0.01) ;;
        trickle-cl) HOSTILE=100; ATT=(trickle-cl --connections 100 --interval 0.5) ;;
        trickle-chunked) HOSTILE=100; ATT=(trickle-chunked --connections 100 --interval 0.5) ;;
        slowloris) HOSTILE=5000; ATT=(slowloris --connections 5000 --interval 1) ;;
        oneshot) HOSTILE=$oneshot_total; ATT=(oneshot --total "$oneshot_total" --processes 2 --concurrency 64) ;;
        storm) HOSTILE=$storm_conns; ATT=(storm --connections "$storm_conns" --processes 2 --path /events/bench) ;;
        flood) HOSTILE=6000; ATT=(flood --connections 6000 --processes 2) ;;
        # Per connection in flight (2 x 100): see the header.
        handshake-storm) HOSTILE=200; ATT=(handshake-storm --total "$hs_total" --processes 2 --concurrency 100) ;;
        tls-garbage) HOSTILE=200; ATT=(tls-garbage --connections 200 --interval 0.5 --reconnect-delay 0.05) ;;
        tls-stall) HOSTILE=5000; ATT=(tls-stall --connections 5000) ;;
    esac
}

BASE_P99=
run_phase() {
    local phase=$1 extra=() old_id= rss0 peak rss_end alive_end=true panics att_json=null HOSTILE=0 ATT=()
    local bound=$BOUND_KIB
    case ,$TLS_PHASES, in *,"$phase",*) bound=$TLS_PHASE_BOUND_KIB ;; esac
    [ "$phase" = flood ] && extra=(--max-connections 3000)
    start_server ssed 5 "${SSED_EXTRA[@]}" "${extra[@]}"
    local flags=(--heartbeat 5 --heartbeat-event keep-alive "${SSED_EXTRA[@]}" "${extra[@]}")
    [ "$TLS" = 0 ] || flags+=(--tls-cert build/tls/server.pem --tls-key build/tls/server.key)
    if [ "$phase" = storm ]; then
        # 200 events older than every honest subscriber: each storm subscriber replays them.
        old_id=$(python3 "$BS/attack.py" seed --addr "127.0.0.1:$SERVER_PORT" "${ATT_TLS[@]}" --path /events/bench --count 200) \
            || die "could not seed the honest topic"
    fi
    start_subscribers
    rss0=$(settle_rss "$SERVER_PID")
    local peak_file; peak_file=$(mktemp "${TMPDIR:-/tmp}/ssed-abuse-rss.XXXXXX"); TMPDIRS+=("$peak_file")
    start_sampler "$SERVER_PID" "$peak_file"
    local counters0 counters1; counters0=$(scrape_counters)
    mark_start
    attack_args "$phase"
    [ -n "$old_id" ] && ATT+=(--last-event-id "$old_id")
    case $phase in
        none) start_publisher ;;
        flood)
            # The publisher must hold its connection before the flood takes every slot.
            start_publisher
            for _ in $(seq 100); do [ "$(established)" -gt "$subs" ] && break; sleep 0.05; done
            start_attack "${ATT[@]}" ;;
        *) start_attack "${ATT[@]}"; start_publisher ;;
    esac
    wait_publisher
    drain
    local t_end; t_end=$(now_s)
    alive "$SERVER_PID" || alive_end=false
    $alive_end && mark_end "$t_end" || MEAS='{"server_cpu_us":null,"wall_s":null}'
    # The counters while the attack still runs, too: stopping it closes its connections (a
    # stalled handshake then counts as "closed"), and the page may want to tell the two apart.
    local counters_mid=null
    alive "$SERVER_PID" && counters_mid=$(scrape_counters)
    if [ "$phase" != none ]; then
        stop "$ATT_PID"
        att_json=$(summary_json "$ATT_LOG")
    fi
    stop "$SAMPLER_PID"
    peak=$(sort -n "$peak_file" | tail -1); peak=${peak:-$rss0}
    rss_end=$(rss_kb "$SERVER_PID" 2>/dev/null || echo null)
    [ "$rss_end" != null ] && [ "$rss_end" -gt "$peak" ] && peak=$rss_end
    # What ssed counted: the attack's own connections close when it stops, give that a second.
    counters1=null
    if alive "$SERVER_PID"; then sleep 1; counters1=$(scrape_counters); fi
    stop "$SUB_PID"
    stop "$SERVER_PID"
    panics=$(grep -c panicked "$SERVER_LOG" || true)
    [ "$panics" = 0 ] || { log "  ssed panicked:"; grep -m3 -A2 panicked "$SERVER_LOG" >&2 || true; }
    $alive_end || log "  ssed died during the phase: $(tail -c 500 "$SERVER_LOG")"
    local sub; sub=$(summary_json "$SUB_LOG")
    [ "$phase" = none ] && BASE_P99=$(jq -r '.latency_us.p99 // empty' <<<"$sub")
    jq -nc --arg phase "$phase" --argjson n "$subs" --argjson k "$events" --argjson hostile "$HOSTILE" \
        --arg attack "${ATT[*]}" --arg flags "${flags[*]}" --argjson att "$att_json" \
        --argjson sub "$sub" --argjson pub "$(summary_json "$PUB_LOG")" --argjson m "$MEAS" \
        --argjson rss0 "$rss0" --argjson peak "$peak" --argjson rss_end "$rss_end" --argjson alive "$alive_end" \
        --argjson panics "$panics" --argjson base "${BASE_P99:-null}" --argjson bound "$bound" --argjson tck "$CLK_TCK" \
        --argjson tls "$TLS_JSON" --argjson c0 "$counters0" --argjson c1 "$counters1" --argjson cm "$counters_mid" '
        # Expected: every event the honest publisher meant to publish, to every honest
        # subscriber (a publisher that the attack slowed down or cut off misses events too).
        ($k * $n) as $expected | ($sub.events // 0) as $delivered
        | ($peak - $rss0) as $growth
        # Counter deltas by reason over the phase (null if either scrape failed).
        | def delta($g; $c1): if $c0 == null or $c1 == null then null
                              else ($c1[$g] // {}) | with_entries(.value -= ($c0[$g][.key] // 0)) end;
        # oneshot over TLS may stop short of its total: bill the connections actually made.
        ($hostile) as $nominal
        | (if $phase == "oneshot" and ($att.done // null) != null and $att.done > 0 and $att.done < $hostile
           then $att.done else $hostile end) as $hostile
        | {bench:"abuse",phase:$phase,tls:$tls,attack:$attack,ssed_flags:$flags,hostile_connections:$nominal,
           hostile_counted:$hostile,hostile_completed:(if $att == null then null else $att.done end),
           tls_handshakes:(if $att == null then null else $att.handshakes end),
           tls_handshake_failures:delta("tls_handshake_failures"; $c1),requests_rejected:delta("requests_rejected"; $c1),
           tls_handshake_failures_before_stop:delta("tls_handshake_failures"; $cm),
           rss_bound_kib_per_conn:$bound,
           subscribers:$n,established:$sub.established,events:$k,published:$pub.published,
           delivered:$delivered,expected:$expected,missed:([$expected - $delivered, 0] | max),
           dropped:$sub.dropped,latency_us:$sub.latency_us,
           rss_before_kb:$rss0,rss_peak_kb:$peak,rss_end_kb:$rss_end,rss_growth_kb:$growth,
           rss_growth_bytes_per_hostile:(if $hostile > 0 then ($growth * 1024 / $hostile | round) else null end),
           rss_growth_kb_per_1000_topics:(if $phase == "oneshot" then ($growth * 1000 / $hostile * 10 | round / 10) else null end),
           server_cpu_s:(if $m.server_cpu_us then ($m.server_cpu_us / 1e6 * 100 | round / 100) else null end),
           wall_s:$m.wall_s,alive:$alive,panics:$panics,no_attack_p99_us:$base}
        | .bars = {
            # Events that never arrived have no latency: if more than 1% of them are missing,
            # the true p99 is beyond the phase, whatever the delivered ones measured.
            latency: (if $phase == "none" or $base == null then null
                      else {limit_us:(2 * $base + 50000),
                            p99_known:(($sub.latency_us.samples // 0) > 0 and .missed * 100 <= $expected),
                            pass:(($sub.latency_us.samples // 0) > 0 and .missed * 100 <= $expected
                                  and ($sub.latency_us.p99 // 1e18) <= 2 * $base + 50000)} end),
            rss: (if $hostile == 0 then null else {limit_kb:($bound * $hostile), pass:($growth <= $bound * $hostile)} end),
            alive: {pass:($alive and $panics == 0)},
            missed: {pass:(.missed == 0 and ($pub.published // 0) == $k)}}
        | .pass = ([.bars[] | select(. != null) | .pass] | all)
        | . + {attack_summary:$att, sub_summary:$sub, pub_summary:$pub}' >>"$out"
    log "  -> $(tail -1 "$out" | jq -r '"p99 \(.latency_us.p99 // "?") us, RSS +\(.rss_growth_kb) kB, CPU \(.server_cpu_s) s, \(.delivered)/\(.expected) delivered: \(if .pass then "PASS" else "FAIL" end)\(if .tls then "; TLS failures \(.tls_handshake_failures // {} | tojson)" else "" end)"')"
}

for p in "${todo[@]}"; do
    log "phase $p"
    run_phase "$p"
done
ln -sf "$(basename "$out")" "$RESULTS/abuse-latest.jsonl"

echo
echo "Abuse: $subs honest subscribers of one topic, $events events at $rate/s per phase, fresh ssed per"
echo "phase. Latency of the honest subscribers in ms; bar = 2 x no-attack p99 + 50 ms. RSS growth = peak"
echo "VmRSS during the attack - before it; bar = $BOUND_KIB KiB per hostile connection. CPU = ssed's utime+stime."
if [ "$TLS" = 1 ]; then
    echo "Over TLS; RSS bar of the TLS phases: $TLS_PHASE_BOUND_KIB KiB per hostile connection, handshake-storm's per"
    echo "connection in flight (200). tls_failures = ssed_tls_handshake_failures_total by reason, during the phase."
fi
{
    printf '%s\t' phase hostile delivered/expected p50 p99 max p99_bar "RSS+_MB" B/hostile CPU_s alive verdict
    [ "$TLS" = 0 ] && echo || printf '%s\n' tls_failures
    jq -r --argjson tls "$TLS_JSON" 'select(.bench=="abuse" and .kind != "meta") |
        # TLS handshake failures ssed counted over the phase, by reason (the non-zero ones).
        def tlsfail: if .tls_handshake_failures == null then "?"
            else ([.tls_handshake_failures | to_entries[] | select(.value != 0) | "\(.key)=\(.value)"] | join(",")
                  | if . == "" then "0" else . end) end;
        def ms: if . == null then "-" else (. / 100 | round / 10 | tostring) end;
        def fails: [.bars | to_entries[] | select(.value != null and (.value.pass | not)) | .key] | join(",");
        (if (.latency_us.samples // 0) == 0 then {} else .latency_us end) as $lat
        | [.phase, .hostile_connections, "\(.delivered)/\(.expected)", ($lat.p50 | ms),
         (if .bars.latency.p99_known == false then ">phase" else ($lat.p99 | ms) end), ($lat.max | ms), (.bars.latency.limit_us | ms), ((.rss_growth_kb / 1024 * 10 | round) / 10),
         (.rss_growth_bytes_per_hostile // "-"), .server_cpu_s,
         (if .alive and .panics == 0 then "yes" else "NO" end),
         (if .pass then "PASS" else "FAIL(\(fails))" end)] + (if $tls then [tlsfail] else [] end) | map(tostring) | @tsv' "$out"
} | column -t -s $'\t'
if jq -se 'any(.phase=="oneshot")' "$out" >/dev/null; then
    jq -r 'select(.phase=="oneshot") | "oneshot: RSS +\(.rss_growth_kb) kB in all, \(.rss_growth_kb_per_1000_topics) kB per 1,000 topics (\(.attack_summary.done // "?") completed)"' "$out"
fi
if jq -se 'any(.phase=="handshake-storm")' "$out" >/dev/null; then
    jq -r 'select(.phase=="handshake-storm") | "handshake-storm: \(.tls_handshakes // "?") handshakes completed (\(.attack_summary.statuses["200"] // 0) of them then asked /healthz) in \(.attack_summary.elapsed_s // "?") s, \(.attack_summary.handshake_failed // "?") failed as the attackers saw them"' "$out"
fi
echo "results: $out"
