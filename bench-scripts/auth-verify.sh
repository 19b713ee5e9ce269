#!/usr/bin/env bash
# auth-verify.sh: JWT verifications per second on one core, for HS256, ES256,
# RS256 (2048-bit) and EdDSA (Ed25519).
#
# Runs examples/verify_bench.rs (one thread, pinned to CPU 0 when taskset is
# there) R times; each run measures every algorithm for S seconds through
# Authorizer::check, the whole cost a subscribe pays: finding the Bearer token,
# decoding header and claims, the signature, exp, matching the topic. Keys are
# made with the openssl command in a temporary directory, fresh each run.
#
# Options:
#   --runs R        runs; the median is reported (default: 5)
#   --seconds S     seconds per algorithm per run (default: 2)
#   --algs a,b,c    algorithms (default: HS256,ES256,RS256,EdDSA)
#   --no-build      do not run cargo build
#   -h, --help
# Output: a table on stdout; a meta line, every run and the medians as JSON
# lines in bench-scripts/results/auth-verify-<time>.jsonl (and
# auth-verify-latest.jsonl), or under $SSED_BENCH_RESULTS if set.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
invocation="bench-scripts/auth-verify.sh $*"

runs=5 seconds=2 algs=HS256,ES256,RS256,EdDSA build=1
while [ $# -gt 0 ]; do
    case $1 in
        --runs) runs=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --algs) algs=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
[[ $seconds =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--seconds must be a number"
install_trap
need_tools
command -v openssl >/dev/null || die "openssl is needed (apt-get install openssl)"

BIN=$ROOT/target/release/examples/verify_bench
if [ "$build" = 1 ]; then
    log "cargo build --release --example verify_bench"
    (cd "$ROOT" && cargo build --release --quiet --example verify_bench) || die "cargo build failed"
fi
[ -x "$BIN" ] || die "$BIN missing (cargo build --release --example verify_bench)"
pin=()
command -v taskset >/dev/null && pin=(taskset -c 0)

mkdir -p "$RESULTS"
out=$(results_file auth-verify)
stamp=$(basename "$out" .jsonl); stamp=${stamp#auth-verify-}
cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
jq -nc --arg stamp "$stamp" --arg command "$invocation" --argjson mem "$(mem_total_kb)" --arg kernel "$(uname -r)" \
    --arg commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" --argjson cores "$(nproc)" \
    --arg cpu "$cpu" --arg algs "$algs" --argjson runs "$runs" --argjson seconds "$seconds" --arg pinned "${pin[*]}" \
    --arg openssl "$(openssl version)" \
    '{bench:"auth-verify",kind:"meta",stamp:$stamp,command:$command,mem_total_kb:$mem,kernel:$kernel,commit:$commit,
      cores:$cores,cpu:$cpu,algs:$algs,runs:$runs,seconds_per_alg:$seconds,pinned:$pinned,keygen:$openssl,
      crypto:"jsonwebtoken 12 + aws-lc-rs",rsa_bits:2048}' >"$out"

for run in $(seq "$runs"); do
    log "run $run/$runs"
    "${pin[@]}" "$BIN" "$seconds" "$algs" | while read -r line; do
        jq -c --argjson run "$run" '{bench:"auth-verify",kind:"run",run:$run} + .' <<<"$line"
    done >>"$out"
done

for alg in $(split_csv "$algs"); do
    pts=$(jq -c --arg a "$alg" 'select(.kind=="run" and .alg==$a)' "$out")
    [ -n "$pts" ] || { log "no result for $alg"; continue; }
    m=$(median $(jq -r '.per_second' <<<"$pts"))
    jq -nc --arg a "$alg" --argjson m "$m" --argjson pts "$(jq -s . <<<"$pts")" \
        '{bench:"auth-verify",kind:"median",alg:$a,runs:($pts|length),per_second:$m,
          us_per_verification:(1e6/$m*1000|round/1000),
          range:[($pts|map(.per_second)|min),($pts|map(.per_second)|max)],token_bytes:$pts[0].token_bytes}' >>"$out"
done
ln -sf "$(basename "$out")" "$RESULTS/auth-verify-latest.jsonl"

echo
echo "JWT verifications per second on one core (median of $runs run(s), ${seconds} s each; $cpu)"
printf '%-7s %12s %10s %24s %7s\n' alg "per second" "µs each" "range" "bytes"
jq -r 'select(.kind=="median") | [.alg, .per_second, .us_per_verification, "\(.range[0])..\(.range[1])", .token_bytes] | @tsv' "$out" |
    while IFS=$'\t' read -r a m us rg b; do
        printf '%-7s %12.0f %10.2f %24s %7s\n' "$a" "$m" "$us" "$rg" "$b"
    done
echo "results: $out"
