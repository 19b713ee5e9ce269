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

# Build ssed + ssed-bench (cargo is incremental) and the baselines.
build_all() {
    log "cargo build --release (ssed, ssed-bench)"
    (cd "$ROOT" && cargo build --release --quiet --bin ssed --bin ssed-bench) \
        || die "cargo build of ssed / ssed-bench failed"
    "$BS/build-baselines.sh" >&2
}

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

# Does the named server have a binary/launcher?
server_available() {
    case $1 in
        ssed|ssed-1w) [ -x "$SSED" ] ;;
        nginx-nchan) [ -x "$BUILD/nginx-nchan/run.sh" ] && command -v nginx >/dev/null ;;
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
        if server_available "$s"; then AVAILABLE+=("$s"); else log "SKIP $s: not built (see build-baselines.sh output)"; fi
    done
    [ ${#AVAILABLE[@]} -gt 0 ] || die "no server to measure"
}

# start_server NAME HEARTBEAT [SSED-FLAGS...]: starts it on a free port, waits until it listens.
# Sets SERVER_PID (what to stop), MEASURE_PID (the process that holds the
# connections: whose RSS and CPU to read), SERVER_PORT, SERVER_LOG. SSED-FLAGS are
# added to ssed's command line (ssed and ssed-1w only).
start_server() {
    local name=$1 hb=$2 tries
    shift 2
    SERVER_PORT=$(free_port)
    SERVER_LOG=$(mktemp "${TMPDIR:-/tmp}/ssed-bench-$name.XXXXXX.log")
    TMPDIRS+=("$SERVER_LOG")
    local addr=127.0.0.1:$SERVER_PORT
    local cmd
    case $name in
        ssed) cmd=("$SSED" --listen "$addr" --heartbeat "$hb" --heartbeat-event keep-alive "$@") ;;
        ssed-1w) cmd=("$SSED" --workers 1 --listen "$addr" --heartbeat "$hb" --heartbeat-event keep-alive "$@") ;;
        nginx-nchan)
            local d; d=$(mktemp -d "${TMPDIR:-/tmp}/ssed-nginx.XXXXXX"); TMPDIRS+=("$d")
            cmd=("$BUILD/nginx-nchan/run.sh" --listen "$addr" --heartbeat "$hb" --dir "$d") ;;
        *) cmd=("$BUILD/$name" --listen "$addr" --heartbeat "$hb") ;;
    esac
    "${cmd[@]}" >"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    MEASURE_PID=$SERVER_PID
    for tries in $(seq 200); do
        if is_listening "$SERVER_PORT"; then
            [ "$name" = nginx-nchan ] || return 0
            # nginx: measure its one worker, the master's child.
            MEASURE_PID=$(cut -d' ' -f1 "/proc/$SERVER_PID/task/$SERVER_PID/children" 2>/dev/null)
            [ -n "$MEASURE_PID" ] && return 0
        fi
        alive "$SERVER_PID" || break
        sleep 0.05
    done
    cat "$SERVER_LOG" >&2
    die "$name did not start listening on $addr"
}

# Server CPU over a phase: mark_start before, mark_end END-TIME after;
# mark_end leaves {"server_cpu_us","server_user_us","server_sys_us","wall_s"}
# in MEAS (wall_s from mark_start to END-TIME).
mark_start() { read -r U0 S0 < <(cpu_user_sys "$MEASURE_PID"); T0=$(now_s); }
mark_end() {
    local u1 s1 t1=${1:-$(now_s)}; read -r u1 s1 < <(cpu_user_sys "$MEASURE_PID")
    MEAS=$(awk -v u=$((u1 - U0)) -v s=$((s1 - S0)) -v h="$CLK_TCK" -v a="$T0" -v b="$t1" 'BEGIN {
        printf "{\"server_cpu_us\":%.0f,\"server_user_us\":%.0f,\"server_sys_us\":%.0f,\"wall_s\":%.3f}",
               (u + s) * 1e6 / h, u * 1e6 / h, s * 1e6 / h, b - a }')
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
        alive "$pid" || { cat "$f" "$f.err" >&2 2>/dev/null; die "ssed-bench exited before ready"; }
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
