#!/usr/bin/env bash
# Runs ssed's whole test suite on a fresh machine: installs what the tests need
# (redis-server and chromium, from Debian's packages), then runs `cargo test`.
set -euo pipefail
cd "$(dirname "$0")"

# Debian packages the tests use: redis-server (tests/redis.rs, tests/browser.rs) and chromium
# (tests/browser.rs, a real EventSource), and openssl (the auth tests make their keys with it).
missing=()
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    echo "test.sh: installing ${missing[*]}" >&2
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The packaged service is not needed: each test starts its own redis-server on a free port.
exec cargo test "$@"
