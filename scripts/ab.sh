#!/usr/bin/env bash
# A/B of two uringreplay builds in alternating pairs of short runs: the steadiest comparison on a
# shared, drifting machine (scripts/bench.sh's rounds are minutes apart; these are seconds apart).
#
#   scripts/ab.sh OLD_BINARY NEW_BINARY                 # small keep-alive response, 8 pairs of 3 s
#   PAIRS=12 SECS=2 CONNS=256 scripts/ab.sh A B
#   FLOWS=/tmp/gen1m.flows WALK=1000000 scripts/ab.sh A B   # walk /item/(i*7919 mod WALK)
#
# Each run: the server pinned to CPU 0 with one worker, wrk -t1 pinned to CPU 1 on 127.0.0.1, one
# second of warm-up, then SECS measured. Prints each pair's requests per server-CPU-second (from
# /proc/PID/stat) and p99, their ratio B/A, and the median ratio. EXTRA adds server arguments to
# both runs, EXTRA_B to B's only. SCRAPE_MS=100 with EXTRA_B=--admin gives B an admin listener on
# 127.0.0.1 whose /metrics a curl loop (on CPU 1, bounded by the run) scrapes every SCRAPE_MS ms:
#   SCRAPE_MS=100 EXTRA_B=--admin scripts/ab.sh BIN BIN   # issue 16's check, >= 0.98 wanted
# Needs wrk and curl (scripts/bench.sh installs wrk); FLOWS defaults to the bench recording.
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 BINARY_A BINARY_B" >&2; exit 2; }
A=$1
B=$2
PAIRS=${PAIRS:-8}
SECS=${SECS:-3}
CONNS=${CONNS:-64}
WALK=${WALK:-0}
EXTRA=${EXTRA:-}
EXTRA_B=${EXTRA_B:-}
SCRAPE_MS=${SCRAPE_MS:-0}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/uringreplay-ab.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
if [ -z "${FLOWS:-}" ]; then
    (cd "$ROOT" && cargo build --release --quiet --example bench_flows)
    "${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/bench_flows" "$WORK/bench.flows"
    FLOWS=$WORK/bench.flows
fi
PROBE=/small
[ "$WALK" -gt 0 ] && PROBE=/item/0

# One measured run of BINARY with extra ARGS: prints "req/server-CPU-s p99". An --admin in ARGS
# gets a loopback port, scraped every SCRAPE_MS ms during the measured run when SCRAPE_MS > 0.
run() {
    local port=$((19000 + RANDOM % 900))
    local admin=$((port + 1000))
    local args=${2//--admin/--admin 127.0.0.1:$admin}
    # shellcheck disable=SC2086
    taskset -c 0 "$1" -S "$FLOWS" --reuse --threads 1 -q -p "$port" $EXTRA $args >/dev/null 2>&1 &
    local pid=$! i
    for i in $(seq 400); do
        curl -sf -o /dev/null "http://127.0.0.1:$port$PROBE" && break
        kill -0 "$pid" 2>/dev/null || { echo "server $1 did not start" >&2; exit 1; }
        sleep 0.05
    done
    local url="http://127.0.0.1:$port$PROBE"
    WALK_N=$WALK taskset -c 1 wrk -t1 -c"$CONNS" -d1s -s "$ROOT/scripts/wrk.lua" "$url" >/dev/null
    local t0 t1 out
    local scraper=""
    if [ "$SCRAPE_MS" -gt 0 ] && [ "$args" != "$2" ]; then
        curl -sf -o /dev/null "http://127.0.0.1:$admin/metrics" || { echo "no /metrics on $admin" >&2; exit 1; }
        # Bounded: at most the run's length in scrapes, and killed when the run ends.
        local n=$((SECS * 1000 / SCRAPE_MS + 10)) pause
        pause=$(awk -v ms="$SCRAPE_MS" 'BEGIN {printf "%.3f", ms / 1000}')
        (for _ in $(seq "$n"); do
            curl -sf -o /dev/null "http://127.0.0.1:$admin/metrics" || break
            sleep "$pause"
        done) &
        scraper=$!
    fi
    t0=$(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')
    out=$(WALK_N=$WALK taskset -c 1 wrk -t1 -c"$CONNS" -d"${SECS}s" -s "$ROOT/scripts/wrk.lua" "$url")
    t1=$(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')
    [ -n "$scraper" ] && { kill "$scraper" 2>/dev/null || true; wait "$scraper" 2>/dev/null || true; }
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    local requests p99
    read -r _ requests _ _ _ p99 _ _ < <(grep '^RESULT' <<<"$out")
    echo "$((requests * $(getconf CLK_TCK) / (t1 - t0 > 0 ? t1 - t0 : 1))) ${p99}us"
}

ratios=()
for i in $(seq "$PAIRS"); do
    read -r a a99 < <(run "$A" "")
    read -r b b99 < <(run "$B" "$EXTRA_B")
    r=$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.3f", b / a}')
    printf 'pair %2d: A %7d req/CPU-s (p99 %s)  B %7d req/CPU-s (p99 %s)  B/A %s\n' "$i" "$a" "$a99" "$b" "$b99" "$r"
    ratios+=("$r")
done
printf '%s\n' "${ratios[@]}" | sort -g |
    awk '{v[NR] = $1} END {printf "median B/A over %d pairs: %s\n", NR, (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}'
