#!/usr/bin/env bash
# build-baselines.sh: build the baseline SSE servers into bench-scripts/build/.
# Idempotent: installs what is missing (apt: gcc, golang-go, nginx,
# libnginx-mod-nchan; crates via cargo), rebuilds only what is stale, and SKIPs
# with a message any baseline it cannot build. Exit 0 unless every one failed.
# Usage: build-baselines.sh [floor,go-nethttp,go-hijack,axum,nginx-nchan]
set -euo pipefail
BS=$(cd "$(dirname "$0")" && pwd)
SRC=$BS/baselines
BUILD=$BS/build
wanted=${1:-floor,go-nethttp,go-hijack,axum,nginx-nchan}
case $wanted in -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
mkdir -p "$BUILD"
say() { echo "build-baselines: $*"; }
built=() skipped=()
skip() { skipped+=("$1"); say "SKIP $1: $2"; }

apt_updated=0
# apt_need PKG...: install the Debian packages that are not installed yet.
apt_need() {
    local missing=() p
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || return 1
    if [ $apt_updated = 0 ]; then apt-get update -qq >/dev/null || return 1; apt_updated=1; fi
    say "apt-get install ${missing[*]}"
    # Keep the package's own nginx service from starting (policy-rc.d 101 =
    # "action forbidden"): the benchmark runs its own standalone instance.
    local policy=/usr/sbin/policy-rc.d added=0
    if [ ! -e $policy ]; then printf '#!/bin/sh\nexit 101\n' > $policy; chmod +x $policy; added=1; fi
    local rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
    [ $added = 0 ] || rm -f $policy
    return $rc
}

# stale OUT SRC...: true if OUT is missing or older than any SRC.
stale() {
    local out=$1 f; shift
    [ -e "$out" ] || return 0
    for f in "$@"; do [ "$f" -nt "$out" ] && return 0; done
    return 1
}

build_floor() {
    command -v gcc >/dev/null || { apt_need gcc && command -v gcc >/dev/null; } \
        || { skip floor "gcc missing and could not be installed"; return; }
    if stale "$BUILD/floor" "$SRC/floor/floor.c"; then
        gcc -O2 -Wall -o "$BUILD/floor" "$SRC/floor/floor.c" || { rm -f "$BUILD/floor"; skip floor "gcc failed"; return; }
    fi
    built+=(floor)
}

build_go() {   # go-nethttp / go-hijack: standard library only, no module proxy.
    local name=$1
    command -v go >/dev/null || { apt_need golang-go && command -v go >/dev/null; } \
        || { skip "$name" "go missing and golang-go could not be installed"; return; }
    (cd "$SRC/$name" && GOPROXY=off GOTOOLCHAIN=local GOFLAGS= GO111MODULE=on \
        go build -trimpath -o "$BUILD/$name" .) || { rm -f "$BUILD/$name"; skip "$name" "go build failed"; return; }
    built+=("$name")
}

build_axum() {
    command -v cargo >/dev/null || { skip axum "cargo not found (install Rust stable)"; return; }
    say "cargo build --release (axum baseline; first build fetches crates)"
    (cd "$SRC/axum" && cargo build --release --quiet --locked --target-dir "$BUILD/axum-target") \
        || { rm -f "$BUILD/axum"; skip axum "cargo build failed"; return; }
    cp "$BUILD/axum-target/release/axum-baseline" "$BUILD/axum.tmp" && mv "$BUILD/axum.tmp" "$BUILD/axum"
    built+=(axum)
}

build_nginx() {
    if ! command -v nginx >/dev/null || [ ! -e /usr/lib/nginx/modules/ngx_nchan_module.so ]; then
        apt_need nginx libnginx-mod-nchan \
            || { skip nginx-nchan "could not install nginx + libnginx-mod-nchan"; return; }
    fi
    mkdir -p "$BUILD/nginx-nchan"
    cp "$SRC/nginx-nchan/run.sh" "$SRC/nginx-nchan/nginx.conf.in" "$BUILD/nginx-nchan/"
    local d out; d=$(mktemp -d)
    if ! out=$("$BUILD/nginx-nchan/run.sh" --test --dir "$d" --listen 127.0.0.1:1 --heartbeat 5 2>&1); then
        echo "$out"; rm -rf "$d"; rm -f "$BUILD/nginx-nchan/run.sh"
        skip nginx-nchan "nginx -t rejected the generated config"; return
    fi
    rm -rf "$d"
    built+=(nginx-nchan)
}

for b in ${wanted//,/ }; do
    case $b in
        floor) build_floor ;;
        go-nethttp|go-hijack) build_go "$b" ;;
        axum) build_axum ;;
        nginx-nchan) build_nginx ;;
        *) skip "$b" "unknown baseline" ;;
    esac
done
say "built: ${built[*]:-none}${skipped:+; SKIPPED: ${skipped[*]}}"
[ ${#built[@]} -gt 0 ]
