#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS_PER_TARGET seconds (default 30), each from a fresh copy
# of its committed seeds (fuzz/corpus/<target>) in fuzz/target/corpus/<target>, so the committed
# corpus never grows. Exits non-zero if any target found a crash, printing the crash file and the
# command that reproduces it. Installs cargo-fuzz (and the nightly toolchain, with rustup) if
# missing. Usage: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-30}
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz/run.sh: SECONDS_PER_TARGET must be a positive whole number" >&2; exit 2; }
shift $(( $# > 0 ? 1 : 0 ))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(request chunked names connection tls)
toolchain=${SSED_FUZZ_TOOLCHAIN:-nightly}
for target in "${targets[@]}"; do
    [ -f "fuzz_targets/$target.rs" ] || { echo "fuzz/run.sh: no target $target" >&2; exit 2; }
done

started=$SECONDS
if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: installing the $toolchain toolchain" >&2
    rustup toolchain install "$toolchain" --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi
echo "fuzz/run.sh: tools ready in $((SECONDS - started)) s" >&2

started=$SECONDS
cargo "+$toolchain" fuzz build
echo "fuzz/run.sh: targets built in $((SECONDS - started)) s" >&2

# Inputs up to 16 KiB: past the 8 KiB head limit and the 1 KiB chunk-size-line limit. The parser
# targets try long inputs from the start (-len_control=0) rather than growing them slowly: a short
# run would otherwise never get past those limits.
declare -A extra=([request]="-max_len=16384 -len_control=0" [chunked]="-max_len=16384 -len_control=0"
    [names]="-max_len=1024" [connection]="-max_len=16384" [tls]="-max_len=4096")
marker=$(mktemp)
trap 'rm -f "$marker"' EXIT
failed=()
for target in "${targets[@]}"; do
    corpus=target/corpus/$target
    rm -rf "$corpus"
    mkdir -p "$corpus" "artifacts/$target"
    cp corpus/"$target"/* "$corpus"/
    log=target/$target.log
    echo "fuzz/run.sh: $target for $seconds s (log: fuzz/$log)" >&2
    started=$SECONDS
    # -timeout: an input taking over 10 s (a hung worker, for `connection`) counts as a crash.
    status=0
    cargo "+$toolchain" fuzz run "$target" "$corpus" -- \
        -max_total_time="$seconds" ${extra[$target]} -timeout=10 \
        -dict=http.dict -print_final_stats=1 >"$log" 2>&1 || status=$?
    grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::(number_of_executed_units|average_exec_per_sec|peak_rss)|SUMMARY|ERROR|panicked' "$log" >&2 || true
    grep -A2 'panicked at' "$log" | head -n 6 >&2 || true
    echo "fuzz/run.sh: $target ran $((SECONDS - started)) s, exit status $status" >&2
    if [ "$status" -ne 0 ]; then
        failed+=("$target")
        crashes=$(find "artifacts/$target" -type f -newer "$marker")
        [ -n "$crashes" ] || tail -n 30 "$log" >&2
        for crash in $crashes; do
            echo "fuzz/run.sh: $target: crash input fuzz/$crash; reproduce with:" >&2
            echo "    (cd fuzz && cargo +$toolchain fuzz run $target $crash)" >&2
        done
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz/run.sh: FAILED: ${failed[*]} (see fuzz/README.md: minimise, fix, add a seed)" >&2
    exit 1
fi
echo "fuzz/run.sh: all targets ran ${seconds} s without a crash" >&2
