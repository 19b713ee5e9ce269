#!/usr/bin/env bash
# scale.sh: N subscribers (default 100,000, up toward 1,000,000) on several ssed
# processes sharing one port, all following one Redis stream, receiving
# heartbeats and then a broadcast.
#
# Usage: bench-scripts/scale.sh [options] [N]
#
# One process may hold at most 20,000 open files here, so the N connections go
# to ceil(N / 17,000) ssed processes (--workers 1 each, one port through
# SO_REUSEPORT, --redis to a private redis-server) and come from ceil(N /
# 18,000) ssed-bench subscribe processes on source addresses 127.0.0.2 and up.
# Steps: refuse an N the machine cannot take (below); start Redis and the ssed
# processes; read the baseline (sum of the ssed VmRSS, kernel Slab,
# MemFree); open the N subscribers and wait for "ready"; read again once
# the RSS sum is steady; hold for --hold seconds (heartbeats); publish --events
# events at 1/s to the shared port; the subscribers stop by themselves once
# every one of them has every event; stop everything.
#
# Reported per connection:
#   user    = (sum of ssed VmRSS after - before) / N: ssed's own memory
#   kernel  = (Slab after - before) / N, machine-wide, and it counts BOTH
#             sockets of each loopback pair (ssed-bench's and ssed's), so
#             roughly twice what the server side alone costs
#   machine = (MemFree before - after) / N: everything (kernel, both sides'
#             user space), but noisy: others' page cache moves it too
#             (MemAvailable would be worse: it counts the socket inodes'
#             reclaimable slab as available)
# plus ssed-bench's own RSS; heartbeats delivered, against bounds: at least
# one per tick between ready and the last publish, at most one per tick since
# the first connect, plus one; and the broadcast: events
# delivered against N x events, delivery latency p50/p99/max over all
# deliveries, and last-subscriber latency (per event, the time until the LAST
# of the N got it: p50 and max over the events).
#
# Refusal (before anything starts): the run is planned at 14,000 bytes per
# connection (measured from 100k to 1M: 10.0-10.2 kB of Slab for its two
# sockets, 32 B in ssed, ~0.24 kB in ssed-bench; so ~35% margin) plus 16 MiB
# per process and 64 MiB for Redis, and refused if that exceeds 70% of
# MemAvailable. Also refused: 2 x N open files (a socket at each end) that
# would leave under max(10% of fs.file-max, 100,000) free for everyone else,
# fs.nr_open or the hard open-file limit under 19,600. On the 24 GiB, 2-core
# machine this was written on, that stops at ~1.08M (memory estimate) and
# ~1.11M (fs.file-max 2,466,183). While it runs, the run is aborted if
# MemAvailable falls under 15% of MemTotal.
#
# Options:
#   --heartbeat SECS   ssed --heartbeat (default 5). A heartbeat costs a write
#                      (~10-15 us of CPU in ssed) and a read: past N/SECS ~
#                      40,000 a second the 2 cores do little else (use 30 for 1M)
#   --hold SECS        seconds to hold after ready before publishing
#                      (default 2 x heartbeat + 1: at least two heartbeats)
#   --events K         events to broadcast, at 1 per second (default 5), each
#                      POSTed by its own curl to the shared port
#   --check            print the plan and the capacity check, run nothing
#   --no-build         do not run cargo build
#   -h, --help
# Output: a summary on stdout; one JSON line appended to
# bench-scripts/results/scale-<date>.jsonl and scale-latest.jsonl (or under
# $SSED_BENCH_RESULTS); the processes' logs, in /tmp/ssed-scale-*, are kept
# only if the run was not clean. Every wait is bounded, ssed-bench has --max-seconds, and every
# process started is killed by PID on exit, interrupted or not.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
invocation="bench-scripts/scale.sh $*"

SSED_PER_PROC=17000      # ssed --max-connections is 19500: room for SO_REUSEPORT's uneven split
BENCH_PER_PROC=18000     # ssed-bench refuses more than 19000 per process
# Connections per source address. connect() takes ports of one parity first
# and searches the range linearly, so past ~half the ephemeral range (14,116
# ports here) every connect scans: 100k subscribers took 60 s at 20,000 per
# source instead of ~5 s. 10,000 stays well under half.
PER_SOURCE=10000
EST_CONN_BYTES=14000     # planning figure per connection, both sides (see above)
EST_PROC_KB=16384        # planning figure per process (ssed or ssed-bench)
EST_REDIS_KB=65536
PATH_SSE=/events/scale

n=100000 hb=5 hold='' events=5 check=0 build=1
while [ $# -gt 0 ]; do
    case $1 in
        --heartbeat) hb=$2; shift 2 ;;
        --hold) hold=$2; shift 2 ;;
        --events) events=$2; shift 2 ;;
        --check) check=1; shift ;;
        --no-build) build=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) n=$1; shift ;;
    esac
done
hold=${hold:-$((2 * hb + 1))}
for v in n hb hold events; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive whole number (got '${!v}')"
done
[ "$hold" -ge "$hb" ] || log "warning: --hold $hold < --heartbeat $hb: maybe no heartbeat at all"
# Measured here: a delivery costs ~10 us of CPU in ssed and about as much in
# ssed-bench, so past ~40,000 heartbeats a second the 2 cores do little else.
[ $(( n / hb )) -le 40000 ] || log "warning: $n subscribers / ${hb} s = $(( n / hb )) heartbeats/s will keep" \
    "the 2 cores busy and slow the broadcast down (see --heartbeat)"

meminfo_kb() { awk -v k="$1:" '$1 == k {print $2}' /proc/meminfo; }
ceil_div() { echo $(( ($1 + $2 - 1) / $2 )); }
gib() { awk -v k="$1" 'BEGIN {printf "%.1f GiB", k / 1048576}'; }

ssed_p=$(ceil_div "$n" "$SSED_PER_PROC")
bench_p=$(ceil_div "$n" "$BENCH_PER_PROC")

# 1. Can the machine take N? Refuse with the numbers if not.
capacity_check() {
    local avail total need budget alloc fmax free_files files reserve nr_open hard lo hi
    avail=$(meminfo_kb MemAvailable); total=$(meminfo_kb MemTotal)
    need=$(( n * EST_CONN_BYTES / 1024 + (ssed_p + bench_p) * EST_PROC_KB + EST_REDIS_KB ))
    budget=$(( avail * 70 / 100 ))
    read -r alloc _ fmax </proc/sys/fs/file-nr
    free_files=$(( fmax - alloc ))
    files=$(( 2 * n + 64 * (ssed_p + bench_p) ))   # a socket on each side of each connection
    nr_open=$(cat /proc/sys/fs/nr_open); hard=$(ulimit -Hn)
    read -r lo hi </proc/sys/net/ipv4/ip_local_port_range
    log "plan: N=$n on $ssed_p ssed + $bench_p ssed-bench processes; memory estimate $(gib "$need")" \
        "(${EST_CONN_BYTES} B/conn + ${EST_PROC_KB} KiB/process); 70% of MemAvailable $(gib "$avail") is $(gib "$budget")"
    log "plan: open files $files of $free_files free under fs.file-max $fmax; largest N by memory" \
        "~$(( (budget - EST_REDIS_KB) * 1024 / (EST_CONN_BYTES + EST_PROC_KB * 1024 / SSED_PER_PROC + EST_PROC_KB * 1024 / BENCH_PER_PROC) ))"
    [ "$need" -le "$budget" ] || die "refused: N=$n needs ~$(gib "$need") but only $(gib "$budget")" \
        "(70% of MemAvailable $(gib "$avail"), MemTotal $(gib "$total")) may be used"
    reserve=$(( fmax / 10 > 100000 ? fmax / 10 : 100000 ))   # left for everyone else
    [ "$files" -le $(( free_files - reserve )) ] || die "refused: N=$n needs $files open files;" \
        "fs.file-max $fmax with $alloc in use leaves $free_files, of which $reserve must stay free"
    { [ "$nr_open" -ge 20000 ] && { [ "$hard" = unlimited ] || [ "$hard" -ge 19600 ]; }; } \
        || die "refused: fs.nr_open $nr_open / hard open-file limit $hard: ssed needs 19,600 per process"
    [ $(( (hi - lo + 1) / 2 )) -ge $(( PER_SOURCE * 5 / 4 )) ] \
        || die "refused: ip_local_port_range $lo-$hi is too narrow for $PER_SOURCE connections per source address"
}
capacity_check
[ "$check" = 0 ] || { log "check only: N=$n fits"; exit 0; }

install_trap
need_tools
if [ "$build" = 1 ]; then
    log "cargo build --release (ssed, ssed-bench)"
    (cd "$ROOT" && nice cargo build --release --quiet --bin ssed --bin ssed-bench) || die "cargo build failed"
fi
{ [ -x "$SSED" ] && [ -x "$BENCH" ]; } || die "$SSED or $BENCH missing (cargo build --release)"
command -v redis-server >/dev/null || die "redis-server is not installed"
ulimit -n "$(ulimit -Hn)"
# Logs of every process; removed after a clean run, kept for a look otherwise
# (also when the run dies). Not under $RESULTS, which may be a committed directory.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ssed-scale-$(date +%Y%m%d-%H%M%S).XXXX")
log "logs in $tmp"

total_kb=$(meminfo_kb MemTotal)
floor_kb=$(( total_kb * 15 / 100 ))
SSED_PIDS=()
BENCH_PIDS=()   # the subscribe parent and its children, also in PIDS

# alive without forking (guard runs it for up to ~60 processes twice a second).
up() { local st; { read -r st <"/proc/$1/stat"; } 2>/dev/null || return 1; st=${st##*) }; [ "${st%% *}" != Z ]; }

# Called from every wait loop: abort (the trap kills everything) if the
# machine runs short of memory or a process we need died.
guard() {
    local a i
    a=$(meminfo_kb MemAvailable)
    [ "$a" -ge "$floor_kb" ] || die "aborting: MemAvailable $(gib "$a") fell under the floor $(gib "$floor_kb")"
    for i in "${!SSED_PIDS[@]}"; do
        up "${SSED_PIDS[i]}" || { tail -5 "$tmp/ssed-$i.err" >&2 || true; die "ssed process ${SSED_PIDS[i]} died"; }
    done
}

# The subscribe parent starts its children at once; record them so that the
# trap kills them too even if the parent is gone.
track_bench_children() {
    local c
    [ ${#BENCH_PIDS[@]} -le "$bench_p" ] || return 0   # all found already
    for c in $(pgrep -P "$bench_pid" 2>/dev/null || true); do
        [[ " ${BENCH_PIDS[*]} " == *" $c "* ]] || { BENCH_PIDS+=("$c"); PIDS+=("$c"); }
    done
}

# Machine CPU counters, "busy total" in ticks (/proc/stat: idle and iowait are not busy).
cpu_stat() { awk '$1 == "cpu" {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat; }
ssed_ticks() { local p t=0; for p in "${SSED_PIDS[@]}"; do t=$(( t + $(cpu_ticks "$p") )); done; echo "$t"; }

rss_sum() { local p kb=0; for p in "$@"; do kb=$(( kb + $(rss_kb "$p") )); done; echo "$kb"; }

# settle_sum PID...: wait until the summed VmRSS stops moving (4 samples 0.5 s
# apart within 64 KiB per process or 0.5%, at most 30 s); print it in kB.
settle_sum() {
    local s=() i lo hi r
    for i in $(seq 60); do
        guard
        r=$(rss_sum "$@"); s+=("$r")
        if [ ${#s[@]} -ge 4 ]; then
            s=("${s[@]: -4}")
            lo=$(printf '%s\n' "${s[@]}" | sort -n | head -1)
            hi=$(printf '%s\n' "${s[@]}" | sort -n | tail -1)
            if [ $((hi - lo)) -le $((64 * $#)) ] || [ $((hi - lo)) -le $((hi / 200)) ]; then
                echo "$r"; return 0
            fi
        fi
        sleep 0.5
    done
    log "warning: RSS sum still moving after 30 s (last ${s[*]} kB)"
    echo "$r"
}

# Closed connections of earlier runs linger ~60 s in TIME_WAIT (~0.25 kB of
# Slab each); if enough to move the kernel figure (~9 kB/conn) by ~1% are
# there, let them expire first. (/proc/net/tcp is read only now, while small.)
tw_count() { awk '$4 == "06"' /proc/net/tcp | wc -l; }
tw_max=$(( n / 4 + 1000 ))
if [ "$(tw_count)" -gt "$tw_max" ]; then
    log "waiting for $(tw_count) TIME_WAIT sockets to expire (at most 65 s)"
    for _ in $(seq 65); do [ "$(tw_count)" -le "$tw_max" ] && break; sleep 1; done
fi

t_start=$(now_s)
read -r load1 _ </proc/loadavg   # recorded: others share the machine
# 2. Redis, then the ssed processes on one port.
rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no >"$tmp/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do is_listening "$rport" && break; sleep 0.1; done
is_listening "$rport" || { cat "$tmp/redis.log" >&2; die "redis-server did not start"; }

port=$(free_port)
addr=127.0.0.1:$port
log "starting $ssed_p ssed processes on $addr (Redis on $rport)"
# --header-timeout 60: with ~100 busy processes on 2 cores a fresh connection's
# GET can wait over the default 10 s (slowloris guard) to be read; at 800k
# that closed 30 subscribers before their response head.
for i in $(seq 0 $((ssed_p - 1))); do
    "$SSED" --listen "$addr" --workers 1 --redis "redis://127.0.0.1:$rport/0" --heartbeat "$hb" \
        --heartbeat-event keep-alive --max-connections 19500 --header-timeout 60 >"$tmp/ssed-$i.out" 2>"$tmp/ssed-$i.err" &
    PIDS+=($!); SSED_PIDS+=($!)
done
# Each prints "listening on ADDR" once its listener is bound.
for _ in $(seq 300); do
    [ "$(cat "$tmp"/ssed-*.out | grep -c '^listening on')" -ge "$ssed_p" ] && break
    guard; sleep 0.1
done
[ "$(cat "$tmp"/ssed-*.out | grep -c '^listening on')" -ge "$ssed_p" ] \
    || { tail -n 3 "$tmp"/ssed-*.err >&2; die "not every ssed process started listening"; }

# 3. Baseline.
rss0=$(settle_sum "${SSED_PIDS[@]}"); slab0=$(slab_kb); free0=$(meminfo_kb MemFree)

# 4. The subscribers. Every bound scales with N (establishing runs at some
# tens of thousands per second on 2 cores); the run ends by itself once every
# subscriber has all the events (--expect-events), at --hold, or at --max-seconds.
connect_s=$(( 60 + n / 2000 ))
grace_s=$(( 30 + n / 5000 ))                  # for the broadcast to reach everyone
bench_hold=$(( hold + events + grace_s + 10 ))
bench_max=$(( connect_s + bench_hold + 60 ))
log "opening $n subscribers from $bench_p ssed-bench processes (connect timeout ${connect_s}s)"
t_sub=$(now_s)
"$BENCH" subscribe --addr "$addr" --path "$PATH_SSE" --connections "$n" --processes "$bench_p" \
    --source-base 127.0.0.2 --per-source "$PER_SOURCE" --connect-timeout "$connect_s" --hold "$bench_hold" \
    --expect-events "$events" --max-seconds "$bench_max" --heartbeat-event keep-alive \
    >"$tmp/sub.out" 2>"$tmp/sub.err" &
bench_pid=$!; PIDS+=("$bench_pid"); BENCH_PIDS+=("$bench_pid")
deadline=$(( $(date +%s) + connect_s + 30 ))
until grep -q '^ready ' "$tmp/sub.out"; do
    guard; track_bench_children
    alive "$bench_pid" || { cat "$tmp/sub.out" "$tmp/sub.err" >&2; die "ssed-bench exited before ready"; }
    [ "$(date +%s)" -lt "$deadline" ] || die "ssed-bench not ready after $((connect_s + 30)) s"
    sleep 0.5
done
t_ready=$(now_s)
track_bench_children
est=$(ready_field "$tmp/sub.out" established); failed=$(ready_field "$tmp/sub.out" failed)
connect_time=$(awk -v a="$t_sub" -v b="$t_ready" 'BEGIN {printf "%.1f", b - a}')
log "ready: established $est, failed $failed, in ${connect_time}s"
[ "$failed" = 0 ] || log "warning: $failed of $n subscribers failed (see the fail reasons in the JSON)"
[ "${est:-0}" -gt 0 ] || die "no subscriber established"

# 5. Kernel side is complete once every head is out: read Slab at once, then
# wait for the ssed RSS sum to settle.
sleep 0.5; slab1=$(slab_kb)
rss1=$(settle_sum "${SSED_PIDS[@]}")
free1=$(meminfo_kb MemFree)
bench_rss=$(rss_sum "${BENCH_PIDS[@]}")
# Sockets per ssed process (fds minus the ~10 the daemon itself holds): how
# evenly SO_REUSEPORT spread the connections.
fds=$(for p in "${SSED_PIDS[@]}"; do find "/proc/$p/fd" -mindepth 1 -maxdepth 1 | wc -l; done | sort -n)
fd_min=$(head -1 <<<"$fds"); fd_max=$(tail -1 <<<"$fds")
log "memory: ssed RSS ${rss0} -> ${rss1} kB, Slab ${slab0} -> ${slab1} kB, MemFree ${free0} -> ${free1} kB, ssed-bench RSS ${bench_rss} kB"

# 6. Heartbeats: hold until --hold seconds after ready.
hold_end=$(awk -v t="$t_ready" -v h="$hold" 'BEGIN {printf "%d", t + h + 0.999}')
log "holding ${hold}s for heartbeats (every ${hb}s)"
while [ "$(date +%s)" -lt "$hold_end" ]; do guard; sleep 0.5; done

# 7. Broadcast through the shared port: one ssed process takes the POST, Redis
# brings it to all of them.
log "publishing $events events at 1/s"
# CPU from here until the subscribers are done: how busy the 2 cores were, and
# how much of it was the ssed processes' (the rest is mostly ssed-bench).
ssed_cpu0=$(ssed_ticks); read -r busy0 all0 < <(cpu_stat); t_pub0=$(now_s)
# One curl per event, one second apart, each waiting for its answer (up to
# pub_timeout). Not ssed-bench publish: under this load ssed may take more
# than the 5 s ssed-bench waits for an answer; it then closes, and ssed
# answers the rest of a pipeline 403 (peer_addr() fails once the peer closed,
# so the publisher no longer counts as loopback) or drops it. The stamp is
# taken a few ms before curl connects, so latencies are that much high.
pub_timeout=$(( 60 + n / 10000 ))
pub_pids=()
for k in $(seq "$events"); do
    [ "$k" = 1 ] || { guard; sleep 1; }
    curl -sS -m "$pub_timeout" -o "$tmp/pub-$k.body" -w '%{http_code}\n' --data-binary "t=$(date +%s%6N)" \
        "http://$addr$PATH_SSE" >"$tmp/pub-$k.code" 2>"$tmp/pub-$k.err" &
    pub_pids+=($!); PIDS+=($!)
done
for p in "${pub_pids[@]}"; do
    while up "$p"; do guard; sleep 0.5; done
done
sent=$events
published=$(cat "$tmp"/pub-*.code | grep -c '^200$' || true)
[ "$published" = "$events" ] || log "warning: $((events - published)) of $events POSTs failed: $(cat "$tmp"/pub-*.code "$tmp"/pub-*.err | sort | uniq -c | tr '\n' ' ')"
pub=$(cat "$tmp"/pub-*.code | jq -R . | jq -sc '{http_codes: .}')

# The subscribers stop once each has all the events, or at their --hold.
while up "$bench_pid"; do guard; sleep 0.5; done
t_end=$(now_s)
ssed_cpu1=$(ssed_ticks); read -r busy1 all1 < <(cpu_stat)
wait "$bench_pid" || log "warning: ssed-bench subscribe exited with an error: $(tail -3 "$tmp/sub.err")"
sum=$(summary_json "$tmp/sub.out")
[ "$sum" != null ] || die "ssed-bench printed no summary: $(tail -3 "$tmp/sub.err")"

# 8. Stop everything (all at once; the trap would too).
for p in "${SSED_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
SSED_PIDS=()
cleanup
elapsed=$(awk -v a="$t_start" -v b="$(now_s)" 'BEGIN {printf "%.1f", b - a}')

# Every subscriber was open from ready until the last event was sent (at
# 1/s), so it got at least one heartbeat per tick of its process in that window.
window=$(awk -v a="$t_ready" -v b="$t_pub0" -v k="$events" 'BEGIN {printf "%.1f", b + k - 1 - a}')
held=$(awk -v a="$t_ready" -v b="$t_end" 'BEGIN {printf "%.1f", b - a}')   # ready -> subscribers done
bcast_s=$(awk -v a="$t_pub0" -v b="$t_end" 'BEGIN {printf "%.1f", b - a}')  # first publish -> all delivered
ticks=$(awk -v w="$window" -v h="$hb" 'BEGIN {printf "%d", w / h}')
# ... and at most one per tick from its connect until the run ended, plus one.
ticks_max=$(awk -v a="$t_sub" -v b="$t_end" -v h="$hb" 'BEGIN {printf "%d", (b - a) / h + 2}')

mkdir -p "$RESULTS"
out=$RESULTS/scale-$(date +%Y%m%d).jsonl
line=$(jq -nc --argjson n "$n" --argjson ssed_p "$ssed_p" --argjson bench_p "$bench_p" \
    --argjson est "$est" --argjson failed "$failed" --argjson connect_s "$connect_time" \
    --argjson fd_min "$fd_min" --argjson fd_max "$fd_max" \
    --argjson rss0 "$rss0" --argjson rss1 "$rss1" --argjson slab0 "$slab0" --argjson slab1 "$slab1" \
    --argjson free0 "$free0" --argjson free1 "$free1" --argjson bench_rss "$bench_rss" \
    --argjson hb "$hb" --argjson window "$window" --argjson held "$held" --argjson ticks "$ticks" --argjson ticks_max "$ticks_max" \
    --argjson ssed_cpu "$(( ssed_cpu1 - ssed_cpu0 ))" --argjson busy "$(( busy1 - busy0 ))" --argjson all "$(( all1 - all0 ))" \
    --argjson clk "$CLK_TCK" --argjson bcast_s "$bcast_s" \
    --argjson events "$events" --argjson sent "$sent" --argjson published "$published" \
    --argjson sum "$sum" --argjson pub "$pub" --argjson elapsed "$elapsed" \
    --arg stamp "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg command "$invocation" \
    --arg commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --argjson nproc "$(nproc)" --argjson load1 "$load1" --argjson memtotal "$total_kb" --arg kernel "$(uname -r)" \
    '{bench:"scale", stamp:$stamp, command:$command, commit:$commit, n:$n,
      processes:{ssed:$ssed_p, ssed_bench:$bench_p},
      established:$est, failed:$failed, fail_reasons:$sum.fail_reasons, dropped:$sum.dropped,
      connect_s:$connect_s, sockets_per_ssed:[$fd_min, $fd_max],
      ssed_rss_kb:[$rss0, $rss1], slab_kb:[$slab0, $slab1], mem_free_kb:[$free0, $free1],
      user_bytes_per_conn:((($rss1 - $rss0) * 1024 / $est) | round),
      kernel_bytes_per_conn:((($slab1 - $slab0) * 1024 / $est) | round),
      kernel_counts:"Slab delta: both sockets of each pair (client and server)",
      machine_bytes_per_conn:((($free0 - $free1) * 1024 / $est) | round),
      bench_rss_kb:$bench_rss, bench_bytes_per_conn:(($bench_rss * 1024 / $est) | round),
      heartbeat_s:$hb,
      heartbeats:{delivered:$sum.heartbeats, expected_min:($est * $ticks), expected_max:($est * $ticks_max),
                  ok:($sum.heartbeats >= $est * $ticks and $sum.heartbeats <= $est * $ticks_max),
                  ticks_min:$ticks, ticks_max:$ticks_max, window_s:$window,
                  per_conn:(($sum.heartbeats / $est * 100 | round) / 100)},
      broadcast:{sent:$sent, delivered:$sum.events, expected:($est * $sent),
                 published:$published, publish_errors:($sent - $published),
                 min_per_conn:$sum.min_events_per_conn, max_per_conn:$sum.max_events_per_conn,
                 latency_us:$sum.latency_us, last_subscriber_latency_us:$sum.last_subscriber_latency_us,
                 seconds:$bcast_s,
                 machine_cpu_busy:(if $all > 0 then ($busy / $all * 100 | round) / 100 else null end),
                 ssed_cpu_s:(($ssed_cpu / $clk * 100 | round) / 100)},
      held_s:$held, elapsed_s:$elapsed,
      machine:{nproc:$nproc, mem_total_kb:$memtotal, kernel:$kernel, loadavg_1m_at_start:$load1},
      bench_summary:$sum, publish_summary:$pub}')
echo "$line" >>"$out"
echo "$line" >>"$RESULTS/scale-latest.jsonl"

ms() { awk -v u="$1" 'BEGIN {printf "%.1f ms", u / 1000}'; }
j() { jq -r "$1" <<<"$line"; }
echo
echo "scale: N=$n subscribers on /events/scale, $ssed_p ssed processes (one port, Redis), $bench_p ssed-bench processes"
printf '  %-18s %s\n' \
    established "$est of $n (failed $failed, dropped $(j .dropped)) in ${connect_time} s; sockets per ssed process ${fd_min}..${fd_max}" \
    "user (ssed RSS)" "$(j .user_bytes_per_conn) B/conn (sum of $ssed_p VmRSS: $rss0 -> $rss1 kB)" \
    "kernel (Slab)" "$(j .kernel_bytes_per_conn) B/conn, both sockets of each pair ($slab0 -> $slab1 kB)" \
    "machine" "$(j .machine_bytes_per_conn) B/conn (MemFree $free0 -> $free1 kB; everything, both sides; noisy)" \
    "ssed-bench RSS" "$(j .bench_bytes_per_conn) B/conn ($bench_rss kB over $bench_p processes + parent)" \
    heartbeats "$(j .heartbeats.delivered) delivered ($(j .heartbeats.per_conn) per conn, every ${hb} s), expected $(j .heartbeats.expected_min)..$(j .heartbeats.expected_max): ok=$(j .heartbeats.ok)" \
    broadcast "$(j .broadcast.delivered) of $(j .broadcast.expected) deliveries ($sent events sent, $published answered 200; per conn $(j .broadcast.min_per_conn)..$(j .broadcast.max_per_conn))" \
    latency "p50 $(ms "$(j .broadcast.latency_us.p50)"), p99 $(ms "$(j .broadcast.latency_us.p99)"), max $(ms "$(j .broadcast.latency_us.max)")" \
    "last subscriber" "p50 $(ms "$(j .broadcast.last_subscriber_latency_us.p50)"), max $(ms "$(j .broadcast.last_subscriber_latency_us.max)") (over $(j .broadcast.last_subscriber_latency_us.events) events)" \
    "broadcast CPU" "$(j .broadcast.seconds) s from first publish to all delivered: machine $(j '.broadcast.machine_cpu_busy * 100 | round')% busy, ssed $(j .broadcast.ssed_cpu_s) CPU-s" \
    elapsed "${elapsed} s"
echo "results: $out"
if jq -e '.failed == 0 and .dropped == 0 and .heartbeats.ok and .broadcast.delivered == .broadcast.expected
          and .broadcast.publish_errors == 0' >/dev/null <<<"$line"; then
    rm -rf -- "$tmp"
else
    echo "not clean (failures, drops, missing deliveries or POST errors): logs kept in $tmp"
fi
