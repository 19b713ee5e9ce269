#!/usr/bin/env bash
# Runs ssed's whole test suite on a fresh machine: installs what the tests need
# (redis-server, for the --redis tests), then runs `cargo test`.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v redis-server >/dev/null 2>&1; then
    echo "test.sh: installing redis-server (needed by tests/redis.rs)" >&2
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
fi
# The packaged service is not needed: each test starts its own redis-server on a free port.
exec cargo test "$@"
