#!/usr/bin/env bash
# The server's own CPU cost of a /metrics scrape, measured directly rather than through wrk's
# throughput (issue 16: scraping every 100 ms must cost < 2 % of the replay rate).
#
#   scripts/scrape-cost.sh BINARY                # 2000 scrapes, 3 s of wrk
#   SCRAPES=5000 SECS=5 CONNS=64 scripts/scrape-cost.sh BINARY
#
# The server runs pinned to CPU 0 with one worker and --admin on 127.0.0.1. Its CPU time is the
# sum over its threads of /proc/PID/task/*/schedstat (nanoseconds on a CPU). Three phases:
#   idle   - nothing for as long as the scrapes take (the baseline: timers, the main thread);
#   scrape - SCRAPES back-to-back GET /metrics from one python3 process pinned to CPU 1
#            (scripts/scrape.py, no pause between scrapes);
#   load   - wrk -t1 -cCONNS pinned to CPU 1 for SECS s, no scrapes: CPU per replayed request.
# Prints CPU µs per scrape (scrape minus idle), per request, and what scraping every 100 ms
# costs: the share of one core it takes and the requests per server-CPU-second ratio that
# leaves (1 - 10 scrapes x CPU per scrape per second of server CPU).
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 BINARY" >&2; exit 2; }
BIN=$1
SCRAPES=${SCRAPES:-2000}
SECS=${SECS:-3}
CONNS=${CONNS:-64}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/uringreplay-scrape.XXXXXX)
PID=""
cleanup() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
if [ -z "${FLOWS:-}" ]; then
    (cd "$ROOT" && cargo build --release --quiet --example bench_flows)
    "${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/bench_flows" "$WORK/bench.flows"
    FLOWS=$WORK/bench.flows
fi

# Nanoseconds the server's threads have been on a CPU.
cpu_ns() {
    cat /proc/"$PID"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%d", s}'
}

port=$((19000 + RANDOM % 900))
admin=$((port + 1000))
taskset -c 0 "$BIN" -S "$FLOWS" --reuse --threads 1 -q -p "$port" --admin "127.0.0.1:$admin" >/dev/null 2>&1 &
PID=$!
for _ in $(seq 400); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/small" && curl -sf -o /dev/null "http://127.0.0.1:$admin/metrics" && break
    kill -0 "$PID" 2>/dev/null || { echo "server $BIN did not start" >&2; exit 1; }
    sleep 0.05
done
# Warm: a second of load, a hundred scrapes.
taskset -c 1 wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:$port/small" >/dev/null
taskset -c 1 python3 "$ROOT/scripts/scrape.py" "127.0.0.1:$admin" 0 100

c0=$(cpu_ns)
w0=$(date +%s%N)
taskset -c 1 python3 "$ROOT/scripts/scrape.py" "127.0.0.1:$admin" 0 "$SCRAPES"
w1=$(date +%s%N)
c1=$(cpu_ns)
sleep "$(awk -v ns=$((w1 - w0)) 'BEGIN {printf "%.3f", ns / 1e9}')"
c2=$(cpu_ns)
out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${SECS}s" "http://127.0.0.1:$port/small")
c3=$(cpu_ns)
requests=$(awk '/requests in/ {print $1}' <<<"$out")
bytes=$(curl -s "http://127.0.0.1:$admin/metrics" | wc -c)

awk -v s=$((c1 - c0)) -v idle=$((c2 - c1)) -v n="$SCRAPES" -v wall=$((w1 - w0)) \
    -v load=$((c3 - c2)) -v req="$requests" -v secs="$SECS" -v bytes="$bytes" 'BEGIN {
    per_scrape = (s - idle) / n / 1000
    per_req = load / req / 1000
    share = 10 * per_scrape / 1e6
    printf "scrapes: %d in %.2f s (%d bytes each); server CPU %.1f ms, idle baseline %.1f ms\n", n, wall / 1e9, bytes, s / 1e6, idle / 1e6
    printf "server CPU per scrape: %.1f us\n", per_scrape
    printf "load: %d requests in %d s; server CPU per replayed request: %.3f us (%.0f req/server-CPU-s)\n", req, secs, per_req, 1e6 / per_req
    printf "one scrape costs as much server CPU as %.0f replayed requests\n", per_scrape / per_req
    printf "scraping every 100 ms: %.3f %% of one core; req/server-CPU-s ratio with scraping %.4f\n", share * 100, 1 - share
}'
