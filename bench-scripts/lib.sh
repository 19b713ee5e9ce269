# Shared helpers for the ssed bench scripts (sourced, not run).
# Every process started through here is recorded in PIDS and killed by
# cleanup(), which the scripts install as an EXIT/INT/TERM trap.

BS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)   # bench-scripts/
ROOT=$(dirname "$BS")                               # the ssed repo
BUILD=$BS/build
RESULTS=${SSED_BENCH_RESULTS:-$BS/results}          # where the JSON lines go
SSED=${SSED:-$ROOT/target/release/ssed}              # overridable, e.g. to test another build
BENCH=${SSED_BENCH:-$ROOT/target/release/ssed-bench}
ALL_SERVERS=ssed,floor,go-nethttp,go-hijack,axum,nginx-nchan
# Also known, on request: ssed-1w (ssed --workers 1, one event loop like floor).
# --tls (use_tls): the same over HTTPS; ssed counts only once it has --tls-cert.
TLS_SERVERS=ssed,go-hijack-tls,axum-tls,nginx-tls,nginx-nchan-tls
TLS_DIR=$BUILD/tls   # ca.pem, server.pem, server.key: made by build-baselines.sh
TLS=0
BENCH_TLS=()         # ssed-bench's TLS flags, for subscribe and publish alike

PIDS=()
TMPDIRS=()
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Kill every process we started: TERM, a short grace, then KILL. By PID only.
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do alive "$pid" || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    PIDS=()
    local d
    for d in "${TMPDIRS[@]}"; do rm -rf -- "$d"; done
    TMPDIRS=()
}

# stop PID: stop one started process and forget it.
stop() {
    local pid=$1 p keep=()
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    { wait "$pid"; } 2>/dev/null || true   # braces: also hush bash's "Aborted" notice
    for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

on_exit() { local rc=$?; trap - EXIT INT TERM; cleanup; exit "$rc"; }
install_trap() {
    trap on_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

need_tools() {   # jq reads the bench's JSON lines
    command -v jq >/dev/null 2>&1 && return
    log "installing jq"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q jq >/dev/null || die "jq is needed"
}

# Build ssed + ssed-bench (cargo is incremental) and the baselines (the TLS ones with --tls).
build_all() {
    log "cargo build --release (ssed, ssed-bench)"
    (cd "$ROOT" && cargo build --release --quiet --bin ssed --bin ssed-bench) \
        || die "cargo build of ssed / ssed-bench failed"
    if [ "$TLS" = 1 ]; then "$BS/build-baselines.sh" tls >&2; else "$BS/build-baselines.sh" >&2; fi
}

# use_tls: the run is over HTTPS. Servers that cannot serve it are refused by
# server_available; ssed-bench trusts the test CA and sends SNI "localhost".
use_tls() {
    TLS=1
    BENCH_TLS=(--tls --ca "$TLS_DIR/ca.pem")
}

# Does this ssed build serve HTTPS? Decided by its --help, so the scripts need
# no change once the daemon gets --tls-cert / --tls-key.
ssed_has_tls() { "$SSED" --help 2>/dev/null | grep -q -- '--tls-cert'; }

# alive PID: running (kill -0 alone also succeeds on an unreaped zombie).
alive() { local st; st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) && [ "${st%% *}" != Z ]; }

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
mem_total_kb() { awk '/^MemTotal:/ {print $2}' /proc/meminfo; }
slab_kb() { awk '/^Slab:/ {print $2}' /proc/meminfo; }
# utime + stime (fields 14, 15 of /proc/PID/stat) in clock ticks; the comm
# field may hold spaces, so count fields after the last ')'.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
cpu_user_sys() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12, $13}'; }
CLK_TCK=$(getconf CLK_TCK)
now_s() { date +%s.%N; }
# nap SECS: sleep whole seconds in 1 s steps, so a trapped INT/TERM is acted on
# within a second (bash runs traps only between commands).
nap() { local i; for ((i = 0; i < $1; i++)); do sleep 1; done; }

# A free loopback TCP port (bind to port 0, read it back, release it).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Is something listening on 127.0.0.1:PORT? (/proc/net/tcp: state 0A = LISTEN)
is_listening() {
    local hex; hex=$(printf '%04X' "$1")
    awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p {f=1} END {exit !f}' /proc/net/tcp
}

# abort_conns PORT: reset every TCP connection to/from 127.0.0.1:PORT
# (ss -K, needs CONFIG_INET_DIAG_DESTROY). An aborted socket leaves no
# TIME_WAIT behind, which would otherwise sit in the kernel slab for 60 s
# and expire in the middle of a later measurement. Best effort.
abort_conns() {
    command -v ss >/dev/null || return 0
    ss -K -Htn "( sport = :$1 or dport = :$1 )" >/dev/null 2>&1 || true
}

# Does the named server have a binary/launcher (and, with --tls, speak TLS)?
# Leaves the reason in WHY_NOT when it does not.
server_available() {
    WHY_NOT="not built (see build-baselines.sh output)"
    if [ "$TLS" = 1 ]; then
        case $1 in
            ssed|ssed-1w|*-tls) ;;
            *) WHY_NOT="no TLS variant (the TLS servers: $TLS_SERVERS)"; return 1 ;;
        esac
        [ -s "$TLS_DIR/ca.pem" ] || { WHY_NOT="no test certificates in $TLS_DIR (build-baselines.sh tls)"; return 1; }
    elif [[ $1 = *-tls ]]; then
        WHY_NOT="a TLS server: run with --tls"; return 1
    fi
    case $1 in
        ssed|ssed-1w)
            [ -x "$SSED" ] || return 1
            [ "$TLS" = 0 ] || ssed_has_tls \
                || { WHY_NOT="no TLS support in this build (no --tls-cert flag in ssed --help)"; return 1; } ;;
        nginx-nchan|nginx-nchan-tls) [ -x "$BUILD/nginx-nchan/run.sh" ] && command -v nginx >/dev/null ;;
        nginx-tls) [ -x "$BUILD/nginx-tls/run.sh" ] && command -v nginx >/dev/null && [ -x "$SSED" ] ;;
        *) [ -x "$BUILD/$1" ] ;;
    esac
}

# prepare_servers CSV BUILD: install the cleanup trap, check the tools, build everything (unless
# BUILD is 0), and set AVAILABLE to the servers of CSV that can run; the others are skipped with
# a message, never silently.
prepare_servers() {
    install_trap
    need_tools
    [ "$2" = 0 ] || build_all
    [ -x "$BENCH" ] || die "$BENCH missing (cargo build --release --bin ssed-bench)"
    AVAILABLE=()
    local s
    for s in $(split_csv "$1"); do
        if server_available "$s"; then AVAILABLE+=("$s"); else log "$s: $WHY_NOT, skipped"; fi
    done
    [ ${#AVAILABLE[@]} -gt 0 ] || die "no server to measure"
}

# start_server NAME HEARTBEAT [SSED-FLAGS...]: starts it on a free port, waits until it listens.
# Sets SERVER_PID (what to stop: stop_server), MEASURE_PID (the process that holds the
# connections: whose RSS and CPU to read), SERVER_PORT, SERVER_LOG. SSED-FLAGS are
# added to ssed's command line (ssed, ssed-1w, and nginx-tls's upstream ssed).
# A server of several processes (nginx-tls: nginx's workers + ssed) has them all in
# MEASURE_PIDS, named in MEASURE_ROLES; RSS and CPU are their sums (measured_*). Its
# clients cost SOCKETS_PER_CONN sockets each on the machine (2, or 4 through a proxy).
start_server() {
    local name=$1 hb=$2 tries
    shift 2
    SERVER_PORT=$(free_port)
    SERVER_LOG=$(mktemp "${TMPDIR:-/tmp}/ssed-bench-$name.XXXXXX.log")
    TMPDIRS+=("$SERVER_LOG")
    local addr=127.0.0.1:$SERVER_PORT
    local cmd ssed_tls=() workers=1
    [ "$TLS" = 0 ] || ssed_tls=(--tls-cert "$TLS_DIR/server.pem" --tls-key "$TLS_DIR/server.key")
    local cert=(--cert "$TLS_DIR/server.pem" --key "$TLS_DIR/server.key")
    SERVER_EXTRA_PIDS=() SOCKETS_PER_CONN=2 UPSTREAM_PORT=
    case $name in
        ssed) cmd=("$SSED" --listen "$addr" --heartbeat "$hb" --heartbeat-event keep-alive "${ssed_tls[@]}" "$@") ;;
        ssed-1w) cmd=("$SSED" --workers 1 --listen "$addr" --heartbeat "$hb" --heartbeat-event keep-alive "${ssed_tls[@]}" "$@") ;;
        nginx-nchan|nginx-nchan-tls)
            local d; d=$(mktemp -d "${TMPDIR:-/tmp}/ssed-nginx.XXXXXX"); TMPDIRS+=("$d")
            [ "$name" = nginx-nchan-tls ] || cert=()
            cmd=("$BUILD/nginx-nchan/run.sh" --listen "$addr" --heartbeat "$hb" --dir "$d" "${cert[@]}") ;;
        nginx-tls)
            # ssed first, plain HTTP on a loopback port of its own, then nginx in front.
            local up; up=$(free_port); UPSTREAM_PORT=$up
            "$SSED" --listen "127.0.0.1:$up" --heartbeat "$hb" --heartbeat-event keep-alive "$@" >"$SERVER_LOG.ssed" 2>&1 &
            SERVER_EXTRA_PIDS=($!); PIDS+=($!); TMPDIRS+=("$SERVER_LOG.ssed")
            for tries in $(seq 200); do is_listening "$up" && break; sleep 0.05; done
            is_listening "$up" || { cat "$SERVER_LOG.ssed" >&2; die "nginx-tls: its ssed did not start on port $up"; }
            local d; d=$(mktemp -d "${TMPDIR:-/tmp}/ssed-nginx.XXXXXX"); TMPDIRS+=("$d")
            cmd=("$BUILD/nginx-tls/run.sh" --listen "$addr" --upstream "127.0.0.1:$up" --dir "$d" "${cert[@]}")
            workers=2 SOCKETS_PER_CONN=4 ;;
        *-tls) cmd=("$BUILD/$name" --listen "$addr" --heartbeat "$hb" "${cert[@]}") ;;
        *) cmd=("$BUILD/$name" --listen "$addr" --heartbeat "$hb") ;;
    esac
    "${cmd[@]}" >"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    MEASURE_PID=$SERVER_PID MEASURE_PIDS=("$SERVER_PID") MEASURE_ROLES=("$name")
    for tries in $(seq 200); do
        if is_listening "$SERVER_PORT"; then
            [[ $name = nginx-* ]] || return 0
            # nginx: measure its workers, the master's children (not the master,
            # which only supervises), and for nginx-tls the ssed behind them.
            # (no newline at the end of that file: read "fails" but fills kids)
            local kids=(); read -r -a kids 2>/dev/null < "/proc/$SERVER_PID/task/$SERVER_PID/children" || true
            if [ ${#kids[@]} -ge $workers ]; then
                MEASURE_PID=${kids[0]} MEASURE_PIDS=("${kids[@]}") MEASURE_ROLES=()
                for _ in "${kids[@]}"; do MEASURE_ROLES+=(nginx); done
                [ "$name" != nginx-tls ] || { MEASURE_PIDS+=("${SERVER_EXTRA_PIDS[0]}"); MEASURE_ROLES+=(ssed); }
                return 0
            fi
        fi
        alive "$SERVER_PID" || break
        sleep 0.05
    done
    cat "$SERVER_LOG" >&2
    die "$name did not start listening on $addr"
}

# stop_server: stops what start_server started (nginx-tls: nginx, then its ssed).
stop_server() {
    local p
    stop "$SERVER_PID"
    for p in "${SERVER_EXTRA_PIDS[@]}"; do stop "$p"; done
    SERVER_EXTRA_PIDS=()
}

# abort_server_conns: abort_conns on the server's port, and its upstream's if it has one.
abort_server_conns() { abort_conns "$SERVER_PORT"; [ -z "$UPSTREAM_PORT" ] || abort_conns "$UPSTREAM_PORT"; }

# settle_measured: settle_rss for each of MEASURE_PIDS; leaves their sum in RSS_KB and
# {role: kB} in RSS_PARTS.
settle_measured() {
    local i r parts='{}'
    RSS_KB=0
    for i in "${!MEASURE_PIDS[@]}"; do
        r=$(settle_rss "${MEASURE_PIDS[$i]}")
        RSS_KB=$((RSS_KB + r))
        parts=$(jq -c --arg role "${MEASURE_ROLES[$i]}" --argjson kb "$r" '.[$role] += $kb' <<<"$parts")
    done
    RSS_PARTS=$parts
}

# measured_rss_kb / measured_cpu_ticks / measured_cpu_user_sys: sums over MEASURE_PIDS.
measured_rss_kb() { local p t=0; for p in "${MEASURE_PIDS[@]}"; do t=$((t + $(rss_kb "$p"))); done; echo "$t"; }
measured_cpu_ticks() { local p t=0; for p in "${MEASURE_PIDS[@]}"; do t=$((t + $(cpu_ticks "$p"))); done; echo "$t"; }
measured_cpu_user_sys() {
    local p u s tu=0 ts=0
    for p in "${MEASURE_PIDS[@]}"; do read -r u s < <(cpu_user_sys "$p"); tu=$((tu + u)) ts=$((ts + s)); done
    echo "$tu $ts"
}

# Server CPU over a phase: mark_start before, mark_end END-TIME after;
# mark_end leaves {"server_cpu_us","server_user_us","server_sys_us","wall_s"}
# in MEAS (wall_s from mark_start to END-TIME), the sums over MEASURE_PIDS, and for a
# server of several roles (nginx-tls) also "server_cpu_parts_us": {role: CPU}.
mark_start() {
    read -r U0 S0 < <(measured_cpu_user_sys); T0=$(now_s)
    local p; CPU0=(); for p in "${MEASURE_PIDS[@]}"; do CPU0+=("$(cpu_ticks "$p")"); done
}
mark_end() {
    local u1 s1 t1=${1:-$(now_s)}; read -r u1 s1 < <(measured_cpu_user_sys)
    MEAS=$(awk -v u=$((u1 - U0)) -v s=$((s1 - S0)) -v h="$CLK_TCK" -v a="$T0" -v b="$t1" 'BEGIN {
        printf "{\"server_cpu_us\":%.0f,\"server_user_us\":%.0f,\"server_sys_us\":%.0f,\"wall_s\":%.3f}",
               (u + s) * 1e6 / h, u * 1e6 / h, s * 1e6 / h, b - a }')
    local roles; roles=$(printf '%s\n' "${MEASURE_ROLES[@]}" | sort -u | wc -l)
    [ "$roles" -gt 1 ] || return 0
    local i parts='{}'
    for i in "${!MEASURE_PIDS[@]}"; do
        parts=$(jq -c --arg r "${MEASURE_ROLES[$i]}" --argjson us $(( ($(cpu_ticks "${MEASURE_PIDS[$i]}") - CPU0[i]) * 1000000 / CLK_TCK )) \
            '.[$r] += $us' <<<"$parts")
    done
    MEAS=$(jq -c --argjson p "$parts" '. + {server_cpu_parts_us: $p}' <<<"$MEAS")
}

# settle_rss PID: wait until VmRSS stops moving (4 samples 0.5 s apart within
# 1% or 64 KiB of each other, at most 30 s), then print it in kB. A fixed long
# sleep would waste minutes; some servers (Go's scavenger) move for a while.
settle_rss() {
    local pid=$1 s=() i lo hi r
    for i in $(seq 60); do
        r=$(rss_kb "$pid") || die "process $pid is gone"
        s+=("$r")
        if [ ${#s[@]} -ge 4 ]; then
            s=("${s[@]: -4}")
            lo=$(printf '%s\n' "${s[@]}" | sort -n | head -1)
            hi=$(printf '%s\n' "${s[@]}" | sort -n | tail -1)
            if [ $((hi - lo)) -le 64 ] || [ $((hi - lo)) -le $((hi / 100)) ]; then
                echo "$r"; return 0
            fi
        fi
        sleep 0.5
    done
    log "warning: RSS of $pid still moving after 30 s (last ${s[*]} kB)"
    echo "$r"
}

# wait_ready FILE PID TIMEOUT: wait for the bench's "ready ..." line.
wait_ready() {
    local f=$1 pid=$2 t=$3 i
    for i in $(seq $((t * 10))); do
        grep -q '^ready ' "$f" 2>/dev/null && return 0
        # (grep again: it may have printed "ready" and exited since the first look)
        alive "$pid" || grep -q '^ready ' "$f" 2>/dev/null \
            || { cat "$f" "$f.err" >&2 2>/dev/null; die "ssed-bench exited before ready"; }
        sleep 0.1
    done
    die "ssed-bench not ready after ${t}s"
}

# ready_field FILE KEY: value of KEY=V in the ready line.
ready_field() { sed -n "s/^ready .*\b$2=\([0-9]*\).*/\1/p" "$1" | head -1; }
# summary_json FILE: the bench's final JSON line, or null if it has none.
summary_json() {
    local l; l=$(grep '^{' "$1" | tail -1) || true
    if [ -n "$l" ] && jq -e . >/dev/null 2>&1 <<<"$l"; then echo "$l"; else echo null; fi
}

# median of the numbers given as arguments (mean of the middle two if even).
median() {
    printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {
        if (NR == 0) print "nan"; else if (NR % 2) print a[(NR+1)/2];
        else printf "%.1f\n", (a[NR/2] + a[NR/2+1]) / 2 }'
}

split_csv() { tr ',' ' ' <<<"$1"; }

# results_file BENCH: a new results/BENCH-<time>.jsonl (never an existing one).
results_file() {
    local base f i=1
    base=$RESULTS/$1-$(date +%Y%m%d-%H%M%S); f=$base.jsonl
    while [ -e "$f" ]; do i=$((i + 1)); f=$base-$i.jsonl; done
    echo "$f"
}
