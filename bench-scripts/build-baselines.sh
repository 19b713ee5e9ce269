#!/usr/bin/env bash
# build-baselines.sh: build the baseline SSE servers into bench-scripts/build/.
# Idempotent: installs what is missing (apt: gcc, golang-go, nginx,
# libnginx-mod-nchan; crates via cargo), rebuilds only what is stale, and SKIPs
# with a message any baseline it cannot build. Exit 0 unless every one failed.
# Usage: build-baselines.sh [floor,go-nethttp,go-hijack,axum,nginx-nchan]
#        build-baselines.sh tls   (the HTTPS ones: go-hijack-tls,axum-tls,nginx-tls,nginx-nchan-tls,
#                                  and their test CA + localhost certificate in build/tls/)
set -euo pipefail
BS=$(cd "$(dirname "$0")" && pwd)
SRC=$BS/baselines
BUILD=$BS/build
wanted=${1:-floor,go-nethttp,go-hijack,axum,nginx-nchan}
case $wanted in -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
[ "$wanted" != tls ] || wanted=go-hijack-tls,axum-tls,nginx-tls,nginx-nchan-tls
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

build_go() {   # go-nethttp / go-hijack / go-hijack-tls (go-hijack's source, served with --cert/--key).
    local name=$1
    command -v go >/dev/null || { apt_need golang-go && command -v go >/dev/null; } \
        || { skip "$name" "go missing and golang-go could not be installed"; return; }
    (cd "$SRC/${name%-tls}" && GOPROXY=off GOTOOLCHAIN=local GOFLAGS= GO111MODULE=on \
        go build -trimpath -o "$BUILD/$name" .) || { rm -f "$BUILD/$name"; skip "$name" "go build failed"; return; }
    built+=("$name")
}

build_axum() {   # axum / axum-tls: one program (axum-tls is it served with --cert/--key).
    local name=$1
    command -v cargo >/dev/null || { skip "$name" "cargo not found (install Rust stable)"; return; }
    say "cargo build --release ($name baseline; first build fetches crates)"
    (cd "$SRC/axum" && cargo build --release --quiet --locked --target-dir "$BUILD/axum-target") \
        || { rm -f "$BUILD/$name"; skip "$name" "cargo build failed"; return; }
    cp "$BUILD/axum-target/release/axum-baseline" "$BUILD/$name.tmp" && mv "$BUILD/$name.tmp" "$BUILD/$name"
    built+=("$name")
}

# A test CA and a certificate for localhost / 127.0.0.1 signed by it, in
# build/tls/ (ca.pem for ssed-bench --ca; server.pem + server.key for the
# servers). ECDSA P-256: what ACME clients issue by default today. Made once.
TLS=$BUILD/tls
build_certs() {
    [ -s "$TLS/ca.pem" ] && [ -s "$TLS/server.pem" ] && [ -s "$TLS/server.key" ] && return 0
    command -v openssl >/dev/null || { apt_need openssl && command -v openssl >/dev/null; } || return 1
    mkdir -p "$TLS"
    say "openssl: test CA and localhost certificate into $TLS"
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    openssl req -x509 "${ec[@]}" -keyout "$TLS/ca.key" -out "$TLS/ca.pem" -days 3650 \
        -subj "/CN=ssed bench test CA" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null || return 1
    openssl req "${ec[@]}" -keyout "$TLS/server.key" -out "$TLS/server.csr" -subj "/CN=localhost" 2>/dev/null || return 1
    printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
        "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" > "$TLS/server.ext"
    openssl x509 -req -in "$TLS/server.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca.key" -CAcreateserial \
        -days 825 -extfile "$TLS/server.ext" -out "$TLS/server.pem" 2>/dev/null || return 1
    chmod 644 "$TLS/server.key"   # read by nginx's master (root) and the servers; a test key
}

build_nginx() {   # nginx-nchan, and nginx-nchan-tls (the same run.sh with --cert/--key)
    local name=$1 tls=()
    [ "$name" = nginx-nchan ] || tls=(--cert "$TLS/server.pem" --key "$TLS/server.key")
    if ! command -v nginx >/dev/null || [ ! -e /usr/lib/nginx/modules/ngx_nchan_module.so ]; then
        apt_need nginx libnginx-mod-nchan \
            || { skip "$name" "could not install nginx + libnginx-mod-nchan"; return; }
    fi
    mkdir -p "$BUILD/nginx-nchan"
    cp "$SRC/nginx-nchan/run.sh" "$SRC/nginx-nchan/nginx.conf.in" "$BUILD/nginx-nchan/"
    local d out; d=$(mktemp -d)
    if ! out=$("$BUILD/nginx-nchan/run.sh" --test --dir "$d" --listen 127.0.0.1:1 --heartbeat 5 "${tls[@]}" 2>&1); then
        echo "$out"; rm -rf "$d"; rm -f "$BUILD/nginx-nchan/run.sh"
        skip "$name" "nginx -t rejected the generated config"; return
    fi
    rm -rf "$d"
    built+=("$name")
}

# nginx-tls: nginx (no module) terminating TLS in front of ssed, which the bench
# scripts build and start themselves.
build_nginx_tls() {
    command -v nginx >/dev/null || apt_need nginx || { skip nginx-tls "could not install nginx"; return; }
    mkdir -p "$BUILD/nginx-tls"
    cp "$SRC/nginx-tls/run.sh" "$SRC/nginx-tls/nginx.conf.in" "$BUILD/nginx-tls/"
    local d out; d=$(mktemp -d)
    if ! out=$("$BUILD/nginx-tls/run.sh" --test --dir "$d" --listen 127.0.0.1:1 --upstream 127.0.0.1:2 \
            --cert "$TLS/server.pem" --key "$TLS/server.key" 2>&1); then
        echo "$out"; rm -rf "$d"; rm -f "$BUILD/nginx-tls/run.sh"
        skip nginx-tls "nginx -t rejected the generated config"; return
    fi
    rm -rf "$d"
    built+=(nginx-tls)
}

for b in ${wanted//,/ }; do
    case $b in
        *-tls) build_certs || { skip "$b" "could not make the test certificates with openssl"; continue; } ;;
    esac
    case $b in
        floor) build_floor ;;
        go-nethttp|go-hijack|go-hijack-tls) build_go "$b" ;;
        axum|axum-tls) build_axum "$b" ;;
        nginx-nchan|nginx-nchan-tls) build_nginx "$b" ;;
        nginx-tls) build_nginx_tls ;;
        *) skip "$b" "unknown baseline" ;;
    esac
done
say "built: ${built[*]:-none}${skipped:+; SKIPPED: ${skipped[*]}}"
[ ${#built[@]} -gt 0 ]
