#!/usr/bin/env bash
# memory.sh: memory per idle SSE subscriber, ssed against the baselines.
#
# For each run, server and N: start a fresh server (heartbeat 5 s), wait until
# its RSS is stable, read its VmRSS and the machine's kernel Slab; open N idle
# subscribers with ssed-bench and wait for its "ready" line (all connected, all
# response heads received); wait until the RSS is stable again; read both
# again. Prints user-space bytes per connection ((RSS after - before) / E) and
# kernel bytes per connection ((Slab after - before) / E), E = established.
#
# Options:
#   --servers a,b,c   servers (default: ssed,floor,go-nethttp,go-hijack,axum,nginx-nchan;
#                     ssed-1w = ssed --workers 1 is also known)
#   --counts  a,b,c   subscriber counts (default: 1000,10000,18000)
#   --runs R          runs per point; the median is reported (default: 3)
#   --topics MODE     single: all on /events/bench (default);
#                     per-connection: one topic each, /events/t{i};
#                     multi: ssed only (the default server then), each subscriber on three
#                     topics: /events?topic=all&topic=group/{i%100}&topic=user/{i}
#   --processes P     ssed-bench subscriber processes (default: ssed-bench's own)
#   --auth            ssed only: start it with --jwt-key and give each subscriber a token of
#                     its own (HS256, exp an hour ahead, granting its topic), so that the
#                     figure includes what a stream's expiry costs the server
#   --tls             over HTTPS: the TLS servers (default: ssed,go-hijack-tls,axum-tls,
#                     nginx-tls,nginx-nchan-tls; ssed only if its --help has --tls-cert),
#                     ssed-bench --tls --ca build/tls/ca.pem. nginx-tls is nginx in front
#                     of ssed: its user figure is nginx's workers' RSS growth plus ssed's
#                     (both recorded, as user_parts), its kernel figure counts 2 connections
#                     per subscriber
#   --no-drain        never wait for TIME_WAIT sockets to expire (see kernel_quiet)
#   --no-build        do not run cargo build / build-baselines.sh
#   -h, --help
# Output: a table on stdout; every run and median as JSON lines in
# bench-scripts/results/memory-<time>.jsonl (and memory-latest.jsonl), or under
# $SSED_BENCH_RESULTS if set.
#
# Why medians: Slab is machine-wide (anything on the box allocating dentries or
# buffers moves it) and RSS settles differently from run to run (allocator,
# Go's scavenger), so one run can be off; the median of R runs is robust.
# Kernel bytes count BOTH ends of each loopback connection (the server's and
# ssed-bench's sockets): the same for every server, so comparable, but about
# twice what the server's side alone costs.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
invocation="bench-scripts/memory.sh $*"

servers= counts=1000,10000,18000 runs=3 topics=single processes= drain=1 build=1 auth=false
while [ $# -gt 0 ]; do
    case $1 in
        --servers) servers=$2; shift 2 ;;
        --counts) counts=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --topics) topics=$2; shift 2 ;;
        --processes) processes=$2; shift 2 ;;
        --auth) auth=true; shift ;;
        --no-drain) drain=0; shift ;;
        --no-build) build=0; shift ;;
        --tls) use_tls; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
case $topics in single|per-connection|multi) ;; *) die "--topics single|per-connection|multi" ;; esac
# Several topics on one connection is ssed's own interface: the others have no such request.
[ -n "$servers" ] || [ "$topics" != multi ] || servers=ssed
if [ -z "$servers" ]; then if [ "$TLS" = 1 ]; then servers=$TLS_SERVERS; else servers=$ALL_SERVERS; fi; fi
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
for n in $(split_csv "$counts"); do
    [[ $n =~ ^[1-9][0-9]*$ ]] && [ "$n" -le 19000 ] \
        || die "count $n: must be 1..19000 (20,000 open files per process)"
done

for s in $(split_csv "$servers"); do   # before building anything
    case $s in ssed|ssed-1w) continue ;; esac
    [ "$auth" = false ] || die "--auth measures ssed only (not $s): give --servers ssed"
    [ "$topics" != multi ] || die "--topics multi measures ssed only (not $s: one topic per request): give --servers ssed"
done

prepare_servers "$servers" "$build"
todo=("${AVAILABLE[@]}")

# mint_tokens SECRET N FILE: N HS256 tokens, line i granting connection i's topic, exp an hour
# ahead. The Python standard library mints them in a second; `ssed token` would take a process
# per token. tests/auth.rs checks that ssed accepts hand-made HS256 tokens like these.
mint_tokens() {
    python3 - "$1" "$2" "$topics" >"$3" <<'PY'
import base64, hashlib, hmac, json, sys, time
secret, n, topics = sys.argv[1].encode(), int(sys.argv[2]), sys.argv[3]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
enc = lambda o: b64(json.dumps(o, separators=(",", ":")).encode())
head, exp = enc({"alg": "HS256", "typ": "JWT"}), int(time.time()) + 3600
for i in range(n):
    grant = {"single": ["bench"], "per-connection": [f"t{i}"], "multi": ["all", f"group/{i % 100}", f"user/{i}"]}[topics]
    signing = head + b"." + enc({"sub": f"user-{i}", "exp": exp, "ssed": {"subscribe": grant}})
    sig = b64(hmac.new(secret, signing, hashlib.sha256).digest())
    print((signing + b"." + sig).decode())
PY
}

mkdir -p "$RESULTS"
out=$(results_file memory)
stamp=$(basename "$out" .jsonl); stamp=${stamp#memory-}
jq -nc --arg stamp "$stamp" --arg command "$invocation" --argjson mem "$(mem_total_kb)" --arg kernel "$(uname -r)" --arg commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --argjson cores "$(nproc)" --arg servers "${todo[*]}" --arg counts "$counts" --argjson runs "$runs" --arg topics "$topics" --argjson auth "$auth" \
    --argjson tls "$([ "$TLS" = 1 ] && echo true || echo false)" \
    '{bench:"memory",kind:"meta",stamp:$stamp,command:$command,mem_total_kb:$mem,kernel:$kernel,commit:$commit,cores:$cores,servers:$servers,counts:$counts,runs:$runs,topics:$topics,auth:$auth,heartbeat_s:5,tls:$tls}' >"$out"

# /proc/net/sockstat "TCP: inuse I orphan O tw T alloc A mem M": cheap even
# with a million sockets on the machine.
tcp_stat() { awk -v k="$1" '$1 == "TCP:" { for (i = 2; i < NF; i += 2) if ($i == k) print $(i + 1) }' /proc/net/sockstat; }

# tw_soon SECS: "COUNT LAST" = TIME_WAIT sockets that expire within SECS
# seconds, and in how many seconds the last of them does (/proc/net/tcp
# column 6 is "timer:ticks-left"; ticks are USER_HZ).
tw_soon() {
    awk -v lim="$1" -v hz="$CLK_TCK" 'function hex(s,  i, n) { n = 0
            for (i = 1; i <= length(s); i++) n = n * 16 + index("0123456789ABCDEF", toupper(substr(s, i, 1))) - 1
            return n }
        $4 == "06" { t = hex(substr($6, 4)) / hz; if (t <= lim) { c++; if (t > m) m = t } }
        END { printf "%d %d\n", c, m + 1 }' /proc/net/tcp
}

# Before a baseline reading: a closed connection leaves a TIME_WAIT socket
# (~256 B of slab) for 60 s. A batch of them expiring between our two Slab
# readings (a few seconds apart) would be subtracted from this run, so if
# enough to move the result by ~1% expire within 20 s, wait for them; then
# wait for Slab to be steady. (Our own runs abort their connections instead
# of closing them, see abort_conns; this is for everything else.)
kernel_quiet() {
    local n=$1 c last i s=()
    if [ "$drain" = 1 ] && [ "$(tcp_stat tw)" -gt $((n / 30 + 20)) ]; then
        read -r c last < <(tw_soon 20)
        if [ "$c" -gt $((n / 30 + 20)) ]; then
            log "waiting $last s for $c TIME_WAIT sockets to expire"
            nap "$last"
        fi
    fi
    for i in $(seq 20); do   # Slab steady: 3 readings 0.5 s apart within 256 kB
        s+=("$(slab_kb)")
        if [ ${#s[@]} -ge 3 ]; then
            s=("${s[@]: -3}")
            [ $(( $(printf '%s\n' "${s[@]}" | sort -n | tail -1) - $(printf '%s\n' "${s[@]}" | sort -n | head -1) )) -le 256 ] && return 0
        fi
        sleep 0.5
    done
}

# one_run SERVER N RUN: measures one point, appends its JSON line to $out and
# leaves it in RUN_LINE. (Not called as $(...): processes started in a
# subshell would escape the trap.)
one_run() {
    local s=$1 n=$2 r=$3 path=/events/bench blog bpid
    case $topics in
        per-connection) path='/events/t{i}' ;;
        multi) path='/events?topic=all&topic=group/{i%100}&topic=user/{i}' ;;
    esac
    kernel_quiet "$n"
    local auth_server=() auth_bench=()
    if [ "$auth" = true ]; then
        local secret tokens
        secret=$(openssl rand -hex 32 2>/dev/null || python3 -c 'import secrets; print(secrets.token_hex(32))')
        tokens=$(mktemp "${TMPDIR:-/tmp}/ssed-bench-tokens.XXXXXX"); TMPDIRS+=("$tokens")
        mint_tokens "$secret" "$n" "$tokens"
        auth_server=(--jwt-key "$secret")
        auth_bench=(--token-file "$tokens")
    fi
    start_server "$s" 5 "${auth_server[@]}"
    local rss0 slab0 rss1 slab1 parts0 parts1
    local tw0 tw1 in0 in1
    settle_measured; rss0=$RSS_KB parts0=$RSS_PARTS
    slab0=$(slab_kb); tw0=$(tcp_stat tw); in0=$(tcp_stat inuse)
    blog=$(mktemp "${TMPDIR:-/tmp}/ssed-bench-sub.XXXXXX"); TMPDIRS+=("$blog")
    # --hold/--max-seconds only bound the run; we stop it once measured.
    "$BENCH" subscribe --addr "127.0.0.1:$SERVER_PORT" --path "$path" --connections "$n" \
        --hold 600 --max-seconds 900 --connect-timeout 120 --heartbeat-event keep-alive ${processes:+--processes "$processes"} "${BENCH_TLS[@]}" "${auth_bench[@]}" \
        >"$blog" 2>"$blog.err" &
    bpid=$!; PIDS+=("$bpid"); TMPDIRS+=("$blog.err")
    wait_ready "$blog" "$bpid" 300
    local est failed
    est=$(ready_field "$blog" established); failed=$(ready_field "$blog" failed)
    # The kernel side is complete once every head is out: read Slab right away
    # (a short window between the two Slab readings means less noise), then
    # wait for the server's RSS to settle.
    sleep 0.5; slab1=$(slab_kb); tw1=$(tcp_stat tw); in1=$(tcp_stat inuse)
    settle_measured; rss1=$RSS_KB parts1=$RSS_PARTS
    [ "$failed" = 0 ] || log "warning: $s N=$n: $failed of $n subscribers failed"
    # Slab is machine-wide: if the machine's TCP socket count moved by more than
    # our 2 sockets per connection (4 through a proxy), something else opened or closed
    # sockets meanwhile. Such a run is kept but flagged, and left out of the median.
    local other=$((in1 - in0 - SOCKETS_PER_CONN * est)) disturbed=false
    if [ "${other#-}" -gt $((est / 50 + 20)) ]; then
        disturbed=true
        log "warning: $((other)) TCP sockets came or went elsewhere on the machine during this run: kernel figure unreliable"
    fi
    abort_server_conns   # no TIME_WAIT left for the next runs' Slab readings
    stop "$bpid"
    stop_server
    if [ "${est:-0}" = 0 ]; then
        [ "$topics" != multi ] || die "$s N=$n: no subscriber established: does this build serve $path (several topics on one connection)?"
        die "$s N=$n: no subscriber established"
    fi
    jq -nc --arg server "$s" --arg topics "$topics" --argjson auth "$auth" --argjson n "$n" --argjson run "$r" \
        --argjson est "$est" --argjson failed "$failed" \
        --argjson rss0 "$rss0" --argjson rss1 "$rss1" --argjson slab0 "$slab0" --argjson slab1 "$slab1" \
        --argjson tw0 "$tw0" --argjson tw1 "$tw1" --argjson in0 "$in0" --argjson in1 "$in1" --argjson dist "$disturbed" \
        --argjson bench "$(summary_json "$blog")" --argjson tls "$([ "$TLS" = 1 ] && echo true || echo false)" --argjson auth "$auth" \
        --argjson p0 "$parts0" --argjson p1 "$parts1" \
        '{bench:"memory",kind:"run",server:$server,tls:$tls,topics:$topics,auth:$auth,n:$n,run:$run,established:$est,failed:$failed,
          rss_before_kb:$rss0,rss_after_kb:$rss1,slab_before_kb:$slab0,slab_after_kb:$slab1,
          time_wait_before:$tw0,time_wait_after:$tw1,tcp_inuse_before:$in0,tcp_inuse_after:$in1,disturbed:$dist,
          user_bytes_per_conn:((($rss1-$rss0)*1024/$est)|round),
          kernel_bytes_per_conn:((($slab1-$slab0)*1024/$est)|round),
          bench_summary:$bench}
        + if ($p0|length) > 1 then {rss_parts_before_kb:$p0, rss_parts_after_kb:$p1,
            user_parts:($p1|with_entries(.value = (((.value - $p0[.key])*1024/$est)|round)))} else {} end' >>"$out"
    RUN_LINE=$(tail -1 "$out")
}

# Runs outermost: the R samples of a point are spread over the whole session,
# so one noisy minute on the shared machine spoils at most one of them.
for r in $(seq "$runs"); do
    for s in "${todo[@]}"; do
        for n in $(split_csv "$counts"); do
            log "run $r/$runs: $s, N=$n, topics=$topics, auth=$auth"
            one_run "$s" "$n" "$r"
            log "  -> $(jq -r '"user \(.user_bytes_per_conn) B/conn, kernel \(.kernel_bytes_per_conn) B/conn (established \(.established))"' <<<"$RUN_LINE")"
        done
    done
done

# Medians per (server, N) into the results file, then the table.
for s in "${todo[@]}"; do
    for n in $(split_csv "$counts"); do
        all=$(jq -c --arg s "$s" --argjson n "$n" 'select(.kind=="run" and .server==$s and .n==$n)' "$out")
        pts=$(jq -c 'select(.disturbed | not)' <<<"$all")
        [ -n "$pts" ] || pts=$all   # every run disturbed: use them all, flagged below
        u=$(median $(jq -r '.user_bytes_per_conn' <<<"$pts"))
        k=$(median $(jq -r '.kernel_bytes_per_conn' <<<"$pts"))
        b=$(median $(jq -r '.rss_before_kb' <<<"$pts"))
        # A proxied server's parts (nginx-tls: nginx, ssed), each its own median.
        parts='{}'
        for role in $(jq -r '.user_parts // {} | keys[]' <<<"$pts" | sort -u); do
            parts=$(jq -c --arg r "$role" --argjson v "$(median $(jq -r --arg r "$role" '.user_parts[$r]' <<<"$pts"))" '.[$r] = $v' <<<"$parts")
        done
        jq -nc --arg s "$s" --arg topics "$topics" --argjson auth "$auth" --argjson n "$n" --argjson u "$u" --argjson k "$k" --argjson b "$b" \
            --argjson pts "$(jq -s . <<<"$pts")" --argjson parts "$parts" --argjson tls "$([ "$TLS" = 1 ] && echo true || echo false)" \
            '{bench:"memory",kind:"median",server:$s,tls:$tls,topics:$topics,auth:$auth,n:$n,runs:($pts|length),
              established_min:($pts|map(.established)|min),
              disturbed_runs:($pts|map(select(.disturbed))|length),
              user_bytes_per_conn:$u,kernel_bytes_per_conn:$k,rss_before_kb:$b,
              user_bytes_range:[($pts|map(.user_bytes_per_conn)|min),($pts|map(.user_bytes_per_conn)|max)],
              kernel_bytes_range:[($pts|map(.kernel_bytes_per_conn)|min),($pts|map(.kernel_bytes_per_conn)|max)]}
             + if ($parts|length) > 0 then {user_parts:$parts} else {} end' >>"$out"
    done
done
ln -sf "$(basename "$out")" "$RESULTS/memory-latest.jsonl"

echo
echo "Memory per idle subscriber (median of $runs run(s); topics: $topics; heartbeat 5 s$([ "$TLS" = 0 ] || echo "; over TLS")$([ "$auth" = true ] && echo "; each with its own token"))"
echo "user = server RSS delta / N; kernel = Slab delta / N (machine-wide: both ends"
echo "of each loopback connection); idle RSS = the server's RSS before connections;"
echo "runs = runs in the median (runs disturbed by other socket activity are left out)"
printf '%-16s %7s %7s %12s %14s %16s %13s %6s\n' server N estab "user B/conn" "kernel B/conn" "user range" "idle RSS kB" runs
jq -r 'select(.kind=="median") | [.server, .n, .established_min, .user_bytes_per_conn, .kernel_bytes_per_conn,
       "\(.user_bytes_range[0])..\(.user_bytes_range[1])", .rss_before_kb,
       (if .disturbed_runs > 0 then "\(.runs)!" else "\(.runs)" end)] | @tsv' "$out" |
    while IFS=$'\t' read -r s n e u k rg b nr; do
        printf '%-16s %7s %7s %12.0f %14.0f %16s %13.0f %6s\n' "$s" "$n" "$e" "$u" "$k" "$rg" "$b" "$nr"
    done
jq -r 'select(.kind=="median" and .user_parts) | "\(.server) N=\(.n): user B/conn = " +
       (.user_parts | to_entries | map("\(.key) \(.value)") | join(" + "))' "$out"
# ssed's bars on user space per subscriber, from N = 10,000 (below, a few pages of RSS
# move the figure); report.py states the same ones on the page.
bar=$(case $TLS+$topics+$auth in 1+*) echo 4096 ;; 0+single+false) echo 64 ;; 0+single+true) echo 96 ;; *) echo 256 ;; esac)
# Over TLS the servers are named for what they are (nginx-tls is nginx in front of ssed): only
# ssed itself has the bar.
jq -r --argjson bar "$bar" 'select(.kind=="median" and (.server=="ssed" or .server=="ssed-1w") and .n >= 10000) |
       "\(.server) N=\(.n): \(.user_bytes_per_conn) B/conn user space, bar <= \($bar) B: " +
       (if .user_bytes_per_conn <= $bar then "PASS" else "FAIL" end)' "$out"
if jq -se 'any(.kind=="median" and .disturbed_runs > 0)' "$out" >/dev/null; then
    echo "! every run of this point was disturbed by other socket activity: kernel figure unreliable"
fi
echo "results: $out"
