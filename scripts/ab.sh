#!/usr/bin/env bash
# A/B of two uringreplay builds in alternating pairs of short runs: the steadiest comparison on a
# shared, drifting machine (scripts/bench.sh's rounds are minutes apart; these are seconds apart).
#
#   scripts/ab.sh OLD_BINARY NEW_BINARY                 # small keep-alive response, 8 pairs of 3 s
#   PAIRS=12 SECS=2 CONNS=256 scripts/ab.sh A B
#   FLOWS=/tmp/gen1m.flows WALK=1000000 scripts/ab.sh A B   # walk /item/(i*7919 mod WALK)
#   MISS=10 EXTRA_B='-w @WORK@/rec.flows' scripts/ab.sh UR UR  # 10 % misses, B records them
#   H2_STREAMS=1 CONNS=64 scripts/ab.sh A B                # HTTP/2 (h2c, h2load -c64 -m1)
#   PROBE=/16k scripts/ab.sh A B                            # another recorded path (the 16 KiB answer)
#   TLS=1 H2_STREAMS=1 CONNS=64 scripts/ab.sh A B          # over TLS (one P-256 certificate, --certs)
#
# Each run: the server pinned to CPU 0 with one worker, wrk -t1 pinned to CPU 1 on 127.0.0.1, one
# second of warm-up, then SECS measured. Prints each pair's requests per server-CPU-second (from
# /proc/PID/stat) and p99, their ratio B/A, and the median ratio. EXTRA adds server arguments to
# both, EXTRA_A and EXTRA_B to one side (@WORK@ in them is the run's scratch directory).
# MISS=K sends one request in K to /miss/I, which no recording has: an nginx on 127.0.0.1 (pinned
# to CPU 1 with wrk, its CPU not counted) answers them, and both servers get
# --mode reverse:http://127.0.0.1:PORT --ignore-port so they forward the misses to it (the reverse
# target's port differs from the recorded one: without --ignore-port every request would miss);
# each run's line then says which share of its requests was replayed (from the server's exit
# report), about 90 % for MISS=10.
# SCRAPE_MS=100 with EXTRA_B=--admin gives B an admin listener on 127.0.0.1 whose /metrics one
# python3 process (pinned to CPU 1 with wrk, bounded by the run) scrapes every SCRAPE_MS ms with
# http.client: one process for the whole run, no fork per scrape (the admin port answers once per
# connection, so it reconnects each time). SCRAPER=curl keeps the old loop of one curl process per
# scrape, whose fork/exec storm on the client core slows wrk itself:
#   SCRAPE_MS=100 EXTRA_B=--admin scripts/ab.sh BIN BIN   # issue 16's check, >= 0.98 wanted
# The server's own cost of a scrape, without wrk: scripts/scrape-cost.sh BIN.
# Needs wrk, curl and python3 (scripts/bench.sh installs wrk, and nginx for MISS); FLOWS defaults to the
# bench recording.
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 BINARY_A BINARY_B" >&2; exit 2; }
A=$1
B=$2
PAIRS=${PAIRS:-8}
SECS=${SECS:-3}
CONNS=${CONNS:-64}
WALK=${WALK:-0}
EXTRA=${EXTRA:-}
EXTRA_A=${EXTRA_A:-}
EXTRA_B=${EXTRA_B:-}
MISS=${MISS:-0}
SCRAPE_MS=${SCRAPE_MS:-0}
SCRAPER=${SCRAPER:-python}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/uringreplay-ab.XXXXXX)
UPSTREAM_PID=""
cleanup() {
    if [ -n "$UPSTREAM_PID" ]; then kill "$UPSTREAM_PID" 2>/dev/null || true; wait "$UPSTREAM_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
EXTRA_A=${EXTRA_A//@WORK@/$WORK}
EXTRA_B=${EXTRA_B//@WORK@/$WORK}
if [ -z "${FLOWS:-}" ]; then
    (cd "$ROOT" && cargo build --release --quiet --example bench_flows)
    "${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/bench_flows" "$WORK/bench.flows"
    FLOWS=$WORK/bench.flows
fi
PROBE=${PROBE:-/small}
[ "$WALK" -gt 0 ] && PROBE=/item/0

# TLS=1: both servers get the same certificate (as scripts/bench.sh's TLS cases) and every URL is
# https (h2load then negotiates h2 by ALPN, wrk HTTP/1.1).
SCHEME=http
if [ "${TLS:-0}" = 1 ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -subj /CN=localhost \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
    cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/both.pem"
    EXTRA="$EXTRA --certs $WORK/both.pem --set confdir=$WORK/confdir"
    SCHEME=https
fi

# The upstream for the misses: nginx with one worker answering every path (configured as
# scripts/bench.sh does: temp paths in the scratch directory, readable by nginx's worker user).
if [ "$MISS" -gt 0 ]; then
    command -v nginx >/dev/null || { echo "MISS needs nginx (scripts/bench.sh installs it)" >&2; exit 1; }
    UPORT=$((18000 + RANDOM % 900))
    while curl -s -o /dev/null "http://127.0.0.1:$UPORT/" 2>/dev/null; do UPORT=$((UPORT + 1)); done
    mkdir -p "$WORK/nginx"
    chmod a+rx "$WORK" "$WORK/nginx"
    cat >"$WORK/nginx/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    server_tokens off;
    client_body_temp_path $WORK/nginx;
    proxy_temp_path $WORK/nginx;
    fastcgi_temp_path $WORK/nginx;
    uwsgi_temp_path $WORK/nginx;
    scgi_temp_path $WORK/nginx;
    server {
        listen 127.0.0.1:$UPORT backlog=4096;
        location / { default_type text/plain; return 200 "answered by the upstream\n"; }
    }
}
NGINX
    taskset -c 1 nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" >/dev/null 2>&1 &
    UPSTREAM_PID=$!
    for i in $(seq 400); do
        curl -sf -o /dev/null "http://127.0.0.1:$UPORT/miss/0" && break
        kill -0 "$UPSTREAM_PID" 2>/dev/null || { echo "nginx did not start:" >&2; cat "$WORK/nginx/error.log" >&2; exit 1; }
        sleep 0.05
    done
    EXTRA="$EXTRA --mode reverse:http://127.0.0.1:$UPORT --ignore-port"
fi

# One load run of SECS against URL, ending in wrk.lua's RESULT line: wrk, or h2load over h2c
# with prior knowledge and H2_STREAMS streams per connection when that is set (no percentiles:
# p99 "-"; MISS and WALK are wrk-only).
load() {
    local url=$1 secs=$2
    if [ -z "${H2_STREAMS:-}" ]; then
        MISS_EVERY=$MISS WALK_N=$WALK taskset -c 1 wrk -t1 -c"$CONNS" -d"${secs}s" -s "$ROOT/scripts/wrk.lua" "$url"
        return
    fi
    taskset -c 1 h2load -t1 -c"$CONNS" -m"$H2_STREAMS" -D"$secs" "$url" 2>&1 |
        awk '/^requests:/ {ok = $8; bad = $10 + $12 + $14}
             /^status codes:/ {bad += $5 + $7 + $9}
             END {printf "RESULT %d - %d - - - -\n", ok, bad}'
}

# One measured run of BINARY with side arguments ARGS: prints "req/server-CPU-s p99 errors
# replayed-share". An
# --admin in ARGS gets a loopback port, scraped every SCRAPE_MS ms during the measured run when
# SCRAPE_MS > 0.
run() {
    local port=$((19000 + RANDOM % 900))
    local admin=$((port + 1000))
    local args=${2//--admin/--admin 127.0.0.1:$admin}
    # shellcheck disable=SC2086
    taskset -c 0 "$1" -S "$FLOWS" --reuse --threads 1 -q -p "$port" $EXTRA $args >/dev/null 2>"$WORK/server.log" &
    local pid=$! i
    for i in $(seq 400); do
        curl -ksf -o /dev/null "$SCHEME://127.0.0.1:$port$PROBE" && break
        kill -0 "$pid" 2>/dev/null || { echo "server $1 did not start" >&2; exit 1; }
        sleep 0.05
    done
    local url="$SCHEME://127.0.0.1:$port$PROBE"
    load "$url" 1 >/dev/null
    local t0 t1 out
    local scraper=""
    if [ "$SCRAPE_MS" -gt 0 ] && [ "$args" != "$2" ]; then
        curl -sf -o /dev/null "http://127.0.0.1:$admin/metrics" || { echo "no /metrics on $admin" >&2; exit 1; }
        # Bounded: at most the run's length in scrapes, and killed when the run ends.
        local n=$((SECS * 1000 / SCRAPE_MS + 10)) pause
        pause=$(awk -v ms="$SCRAPE_MS" 'BEGIN {printf "%.3f", ms / 1000}')
        if [ "$SCRAPER" = curl ]; then
            (for _ in $(seq "$n"); do
                curl -sf -o /dev/null "http://127.0.0.1:$admin/metrics" || break
                sleep "$pause"
            done) &
        else
            taskset -c 1 python3 "$ROOT/scripts/scrape.py" "127.0.0.1:$admin" "$SCRAPE_MS" "$n" &
        fi
        scraper=$!
    fi
    t0=$(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')
    out=$(load "$url" "$SECS")
    t1=$(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')
    [ -n "$scraper" ] && { kill "$scraper" 2>/dev/null || true; wait "$scraper" 2>/dev/null || true; }
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    local requests errors p99 share
    read -r _ requests _ errors _ p99 _ _ < <(grep '^RESULT' <<<"$out")
    # The exit report: "replayed N, forwarded M, ...": the share of requests replayed.
    share=$(sed -n 's/^replayed \([0-9]*\), forwarded \([0-9]*\),.*/\1 \2/p' "$WORK/server.log" |
        awk '{printf "%.1f%%", ($1 + $2 > 0) ? 100 * $1 / ($1 + $2) : 0}')
    echo "$((requests * $(getconf CLK_TCK) / (t1 - t0 > 0 ? t1 - t0 : 1))) ${p99}us $errors ${share:-?}"
}

ratios=()
for i in $(seq "$PAIRS"); do
    read -r a a99 ae ash < <(run "$A" "$EXTRA_A")
    read -r b b99 be bsh < <(run "$B" "$EXTRA_B")
    r=$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.3f", b / a}')
    printf 'pair %2d: A %7d req/CPU-s (p99 %s, %s errors, %s replayed)  B %7d req/CPU-s (p99 %s, %s errors, %s replayed)  B/A %s\n' \
        "$i" "$a" "$a99" "$ae" "$ash" "$b" "$b99" "$be" "$bsh" "$r"
    ratios+=("$r")
done
printf '%s\n' "${ratios[@]}" | sort -g |
    awk '{v[NR] = $1} END {printf "median B/A over %d pairs: %s\n", NR, (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}'
