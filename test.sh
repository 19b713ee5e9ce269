#!/usr/bin/env bash
# Runs ssed's whole test suite on a fresh machine: installs what the tests need
# (redis-server, chromium, systemd and openssl, from Debian's packages), runs `cargo test` (with
# this script's arguments), then the fuzz targets for SSED_FUZZ_SECONDS seconds each (default 30;
# 0 skips them; see fuzz/README.md).
set -euo pipefail
cd "$(dirname "$0")"
# Seconds each fuzz target runs after the tests (fuzz/run.sh); 0 skips fuzzing.
fuzz_seconds=${SSED_FUZZ_SECONDS:-30}
if ! [[ "$fuzz_seconds" =~ ^[0-9]+$ ]]; then
    echo "test.sh: SSED_FUZZ_SECONDS must be a whole number of seconds, not '$fuzz_seconds'" >&2
    exit 2
fi

# Debian packages the tests use: redis-server (tests/redis.rs, tests/browser.rs,
# tests/upgrade.rs), chromium (tests/browser.rs and tests/tls.rs, a real EventSource), systemd for
# systemd-analyze (tests/packaging.rs verifies the unit; nothing is started under systemd),
# openssl (the auth tests make their keys with it) and curl (tests/tls.rs, an HTTPS client
# other than rustls).
missing=()
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
if [ ${#missing[@]} -gt 0 ]; then
    echo "test.sh: installing ${missing[*]}" >&2
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The packaged service is not needed: each test starts its own redis-server on a free port.
cargo test "$@"

if [ "$fuzz_seconds" -gt 0 ]; then
    fuzz/run.sh "$fuzz_seconds"
fi
