#!/usr/bin/env bash
# run-all.sh: every benchmark behind docs/benchmarks.md, one after the other (two benchmarks
# sharing this machine would measure each other), into docs/benchmark-data/, then regenerates
# docs/benchmarks.md and its chart with report.py. Takes over an hour on 2 cores (~80 min).
# The TLS runs (memory.sh --tls, fanout.sh --tls) need the TLS baselines and the test
# certificates: build-baselines.sh tls before them (the earlier builds make the plain ones only).
#
#   --quick   small counts and one run per point, to check the pipeline (figures not for publishing)
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
case ${1:-} in
    --quick) quick=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    "") ;;
    *) echo "run-all.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
esac

export SSED_BENCH_RESULTS=$PWD/docs/benchmark-data
mkdir -p "$SSED_BENCH_RESULTS"
# Fresh figures for everything this script runs; scale-large-runs.jsonl (N up to 1,000,000,
# which takes longer than the rest together) is kept: rerun those with scale.sh by hand.
rm -f "$SSED_BENCH_RESULTS"/memory-*.jsonl "$SSED_BENCH_RESULTS"/fanout-*.jsonl "$SSED_BENCH_RESULTS"/scale-2*.jsonl \
    "$SSED_BENCH_RESULTS"/scale-latest.jsonl "$SSED_BENCH_RESULTS"/abuse-*.jsonl \
    "$SSED_BENCH_RESULTS"/auth-verify-*.jsonl "$SSED_BENCH_RESULTS"/auth-storm-*.jsonl

if [ "$quick" = 1 ]; then
    bench-scripts/memory.sh --counts 1000 --runs 1
    bench-scripts/memory.sh --no-build --servers ssed --topics per-connection --counts 1000 --runs 1
    bench-scripts/memory.sh --no-build --servers ssed --topics multi --counts 1000 --runs 1
    bench-scripts/fanout.sh --no-build --servers ssed,ssed-1w,floor --subscribers 1000 \
        --events 20 --saturate-seconds 3 --heartbeat-seconds 3
    bench-scripts/build-baselines.sh tls || true   # what it cannot build, memory.sh/fanout.sh skip
    bench-scripts/fanout.sh --no-build --tls --subscribers 1000 \
        --events 20 --saturate-seconds 3 --heartbeat-seconds 3
    bench-scripts/memory.sh --no-build --tls --counts 1000 --runs 1
    bench-scripts/fanout.sh --no-build --topics multi --subscribers 1000 --rate 20 --saturate-seconds 3
    bench-scripts/scale.sh --heartbeat 2 20000
    bench-scripts/abuse.sh --no-build --quick
else
    # Memory per idle subscriber: every server, one topic; then ssed with a topic per subscriber.
    bench-scripts/memory.sh --counts 1000,10000,18000 --runs 3
    bench-scripts/memory.sh --no-build --servers ssed --topics per-connection --counts 10000,18000 --runs 3
    # ssed with three topics per subscriber in one request (all, group/<i mod 100>, user/<i>).
    bench-scripts/memory.sh --no-build --servers ssed --topics multi --counts 10000,18000 --runs 3
    # ssed with a token per subscriber (an expiry to keep for each).
    bench-scripts/memory.sh --no-build --servers ssed --auth --counts 10000,18000 --runs 3
    # Token verifications per core, and 10,000 subscribers with ES256 tokens connecting at once.
    bench-scripts/auth-verify.sh
    bench-scripts/auth-storm.sh --no-build --runs 3
    # Fan-out at 10,000 subscribers, ssed with 2 workers and with 1 beside the baselines.
    bench-scripts/fanout.sh --no-build --servers ssed,ssed-1w,floor,go-nethttp,go-hijack,axum,nginx-nchan \
        --subscribers 10000
    # Over TLS: ssed's own (rustls) beside go-hijack-tls, axum-tls, nginx-tls (nginx in front of
    # ssed) and nginx-nchan-tls. The fan-out first, right after the plain one: report.py compares
    # ssed's CPU per event over TLS with the plain run closest in time (~5 min); then memory (~12 min).
    bench-scripts/build-baselines.sh tls || true   # what it cannot build, memory.sh/fanout.sh skip
    bench-scripts/fanout.sh --no-build --tls --subscribers 10000
    bench-scripts/memory.sh --no-build --tls --counts 10000,18000 --runs 3
    # One broadcast pass to 18,000 subscribers.
    bench-scripts/fanout.sh --no-build --servers ssed --subscribers 18000 --phases steady
    # CPU per delivery with three topics per subscriber against one, in the same session (~8 min).
    bench-scripts/fanout.sh --no-build --topics multi --runs 3
    # Beyond one process, through Redis; and what the machine refuses.
    bench-scripts/scale.sh --no-build 100000
    bench-scripts/scale.sh --no-build --heartbeat 30 --check 1200000 \
        >"$SSED_BENCH_RESULTS/scale-check-1200000.txt" 2>&1 || true
    # Honest subscribers while hostile clients attack (~5 min).
    bench-scripts/abuse.sh --no-build
fi
bench-scripts/report.py
