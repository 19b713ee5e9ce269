#!/usr/bin/env bash
# auth-storm.sh: a reconnect storm against ssed checking tokens. N subscribers, each with an
# ES256 token of its own (ssed-bench --token-file), connect at once (--connect-batch N); timed
# until every one has its stream head (ssed-bench's "ready", its summary's ready_s), with the
# server's CPU over the same span. The same storm without tokens (ssed with no key) is run
# alongside, so the difference is what verifying costs.
#
# For each run and mode: a fresh ssed (default workers), ssed-bench subscribe, wait for ready,
# read ssed's CPU, stop both. Tokens are minted once, with `ssed token` and a P-256 key made by
# openssl, exp an hour ahead, each granting its connection's own topic t{i} (one topic each).
#
# Options:
#   --connections N   subscribers (default: 10000; at most 19000)
#   --connect-batch B connections connecting at once (default: N, all of them)
#   --runs R          runs per mode; the median is reported (default: 3)
#   --modes a,b       es256 and/or none (default: es256,none)
#   --no-build        do not run cargo build
#   -h, --help
# Output: a table on stdout; a meta line, every run and the medians as JSON lines in
# bench-scripts/results/auth-storm-<time>.jsonl (and auth-storm-latest.jsonl), or under
# $SSED_BENCH_RESULTS if set.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
invocation="bench-scripts/auth-storm.sh $*"

n=10000 batch= runs=3 modes=es256,none build=1
while [ $# -gt 0 ]; do
    case $1 in
        --connections) n=$2; shift 2 ;;
        --connect-batch) batch=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --modes) modes=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
[[ $n =~ ^[1-9][0-9]*$ ]] && [ "$n" -le 19000 ] || die "--connections must be 1..19000"
batch=${batch:-$n}
[[ $batch =~ ^[1-9][0-9]*$ ]] || die "--connect-batch must be a positive integer"
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
for m in $(split_csv "$modes"); do case $m in es256|none) ;; *) die "--modes: es256 or none, not $m" ;; esac; done
install_trap
need_tools
command -v openssl >/dev/null || die "openssl is needed (apt-get install openssl)"
if [ "$build" = 1 ]; then
    log "cargo build --release (ssed, ssed-bench)"
    (cd "$ROOT" && cargo build --release --quiet --bin ssed --bin ssed-bench) || die "cargo build failed"
fi
[ -x "$SSED" ] && [ -x "$BENCH" ] || die "$SSED or $BENCH missing (cargo build --release)"

work=$(mktemp -d "${TMPDIR:-/tmp}/ssed-auth-storm.XXXXXX"); TMPDIRS+=("$work")
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/app.pem" 2>/dev/null
openssl pkey -in "$work/app.pem" -pubout -out "$work/app.pub" 2>/dev/null
log "minting $n ES256 tokens with ssed token"
seq 0 $((n - 1)) | xargs -P "$(nproc)" -n 200 sh -c '
    for i; do printf "%s %s\n" "$i" "$("$0" token --jwt-private-key-file "'"$work"'/app.pem" --subscribe "t$i" --sub "user-$i" --ttl 3600)"; done' "$SSED" \
    | sort -n | cut -d' ' -f2 >"$work/tokens"
[ "$(grep -c . "$work/tokens")" = "$n" ] || die "minting tokens failed"

mkdir -p "$RESULTS"
out=$(results_file auth-storm)
stamp=$(basename "$out" .jsonl); stamp=${stamp#auth-storm-}
jq -nc --arg stamp "$stamp" --arg command "$invocation" --argjson mem "$(mem_total_kb)" --arg kernel "$(uname -r)" --arg commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --argjson cores "$(nproc)" --argjson n "$n" --argjson batch "$batch" --argjson runs "$runs" --arg modes "$modes" \
    '{bench:"auth-storm",kind:"meta",stamp:$stamp,command:$command,mem_total_kb:$mem,kernel:$kernel,commit:$commit,cores:$cores,connections:$n,connect_batch:$batch,runs:$runs,modes:$modes,alg:"ES256"}' >"$out"

# one_run MODE RUN: one storm; appends its JSON line to $out and leaves it in RUN_LINE.
one_run() {
    local mode=$1 r=$2 blog bpid server_flags=() bench_flags=()
    if [ "$mode" = es256 ]; then
        server_flags=(--jwt-key-file "$work/app.pub")
        bench_flags=(--token-file "$work/tokens")
    fi
    start_server ssed 30 "${server_flags[@]}"
    blog=$(mktemp "$work/bench.XXXXXX")
    mark_start
    "$BENCH" subscribe --addr "127.0.0.1:$SERVER_PORT" --path '/events/t{i}' --connections "$n" \
        --connect-batch "$batch" --connect-timeout 120 --hold 1 --max-seconds 300 \
        --heartbeat-event keep-alive "${bench_flags[@]}" >"$blog" 2>"$blog.err" &
    bpid=$!; PIDS+=("$bpid")
    wait_ready "$blog" "$bpid" 200
    mark_end
    for _ in $(seq 100); do alive "$bpid" || break; sleep 0.1; done   # --hold 1, then it reports
    local est failed summary
    est=$(ready_field "$blog" established); failed=$(ready_field "$blog" failed)
    summary=$(summary_json "$blog")
    abort_conns "$SERVER_PORT"
    stop "$bpid"
    stop "$SERVER_PID"
    [ "$failed" = 0 ] || log "warning: $mode: $failed of $n subscribers failed ($(jq -c .fail_reasons <<<"$summary"))"
    jq -nc --arg mode "$mode" --argjson run "$r" --argjson n "$n" --argjson est "$est" --argjson failed "$failed" \
        --argjson meas "$MEAS" --argjson bench "$summary" \
        '{bench:"auth-storm",kind:"run",mode:$mode,run:$run,connections:$n,established:$est,failed:$failed,
          ready_s:($bench.ready_s // null),server_cpu_us:$meas.server_cpu_us,server_user_us:$meas.server_user_us,
          server_sys_us:$meas.server_sys_us,bench_summary:$bench}' >>"$out"
    RUN_LINE=$(tail -1 "$out")
}

for r in $(seq "$runs"); do
    for m in $(split_csv "$modes"); do
        log "run $r/$runs: $m, N=$n, batch=$batch"
        one_run "$m" "$r"
        log "  -> $(jq -r '"all subscribed in \(.ready_s) s, server CPU \(.server_cpu_us / 1000 | round) ms (established \(.established))"' <<<"$RUN_LINE")"
    done
done

for m in $(split_csv "$modes"); do
    pts=$(jq -c --arg m "$m" 'select(.kind=="run" and .mode==$m)' "$out")
    jq -nc --arg m "$m" --argjson n "$n" \
        --argjson ready "$(median $(jq -r '.ready_s' <<<"$pts"))" \
        --argjson cpu "$(median $(jq -r '.server_cpu_us' <<<"$pts"))" \
        --argjson pts "$(jq -s . <<<"$pts")" \
        '{bench:"auth-storm",kind:"median",mode:$m,connections:$n,runs:($pts|length),
          established_min:($pts|map(.established)|min),ready_s:$ready,server_cpu_us:$cpu,
          ready_s_range:[($pts|map(.ready_s)|min),($pts|map(.ready_s)|max)]}' >>"$out"
done
ln -sf "$(basename "$out")" "$RESULTS/auth-storm-latest.jsonl"

echo
echo "Reconnect storm: $n subscribers connecting $batch at a time (median of $runs run(s))"
echo "ready = seconds until every subscriber had its stream head; CPU = ssed's user+sys over that span"
printf '%-8s %7s %10s %16s %14s\n' mode estab "ready s" "ready range s" "server CPU ms"
jq -r 'select(.kind=="median") | [.mode, .established_min, .ready_s, "\(.ready_s_range[0])..\(.ready_s_range[1])", .server_cpu_us / 1000] | @tsv' "$out" |
    while IFS=$'\t' read -r m e rd rg c; do
        printf '%-8s %7s %10.3f %16s %14.0f\n' "$m" "$e" "$rd" "$rg" "$c"
    done
echo "results: $out"
