#!/usr/bin/env bash
# Side-by-side benchmark: uringreplay against nginx on loopback, keep-alive, one server core.
#
#   scripts/bench.sh [ROUNDS] [SECONDS]      (defaults: 2 rounds, 8 s measured after 2 s warm-up)
#
# The server runs pinned to CPU 0 (uringreplay with one worker thread, nginx with one worker) and
# wrk -t1 -c64 pinned to CPU 1. wrk saturates before fast servers do, so the ranking figure is
# requests per server-CPU-second: requests completed ÷ (user + sys) CPU seconds the server's
# processes used over the same window (from /proc/PID/stat). Rounds alternate A/B per case.
# Compare figures only inside one run: this machine drifts by ±10 %.
set -euo pipefail

ROUNDS=${1:-2}
SECS=${2:-8}
WARM=2
CONNS=64
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d /tmp/uringreplay-bench.XXXXXX)
UR_PORT=18080
NG_PORT=18081
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need nginx; then
    echo "installing wrk and nginx-light" >&2
    apt-get update -qq && apt-get install -y -qq wrk nginx-light >/dev/null
fi

echo "building (release)" >&2
(cd "$ROOT" && cargo build --release --quiet --bin uringreplay --example bench_flows)
"$TARGET/release/examples/bench_flows" "$WORK/bench.flows"

# nginx: one worker, `return 200` for the small response, a static file for 16 KiB.
mkdir -p "$WORK/www" "$WORK/nginx"
head -c 16384 /dev/zero | tr '\0' x > "$WORK/www/16k"
cat > "$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 1000000;
    server_tokens off;
    client_body_temp_path $WORK/nginx;
    proxy_temp_path $WORK/nginx;
    fastcgi_temp_path $WORK/nginx;
    uwsgi_temp_path $WORK/nginx;
    scgi_temp_path $WORK/nginx;
    server {
        listen 127.0.0.1:$NG_PORT reuseport;
        location = /small {
            add_header Cache-Control max-age=60;
            add_header X-Request-Id bench-0001;
            default_type text/plain;
            return 200 "hello from the recording\n";
        }
        location = /16k { root $WORK/www; default_type text/plain; }
    }
}
EOF

taskset -c 0 "$TARGET/release/uringreplay" -S "$WORK/bench.flows" --reuse --threads 1 \
    -p $UR_PORT >"$WORK/ur.out" 2>"$WORK/ur.err" &
UR_PID=$!
PIDS+=("$UR_PID")
taskset -c 0 nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" 2>"$WORK/nginx/stderr" &
NG_PID=$!
PIDS+=("$NG_PID")

for i in $(seq 100); do
    if curl -sf "http://127.0.0.1:$UR_PORT/small" >/dev/null 2>&1 \
        && curl -sf "http://127.0.0.1:$NG_PORT/small" >/dev/null 2>&1; then break; fi
    sleep 0.1
done
curl -sf "http://127.0.0.1:$UR_PORT/small" >/dev/null || { cat "$WORK/ur.err"; exit 1; }
curl -sf "http://127.0.0.1:$NG_PORT/small" >/dev/null || { cat "$WORK/nginx/stderr" "$WORK/nginx/error.log"; exit 1; }
echo "uringreplay: $(grep -o 'on [a-z_]* ([^)]*)\|on epoll' "$WORK/ur.err" | head -1)" >&2

# CPU ticks (user + sys) of a process and its children (nginx: master and worker).
ticks() {
    local total=0 p
    for p in "$1" $(pgrep -P "$1" || true); do
        [ -r "/proc/$p/stat" ] || continue
        # Fields 14 and 15 after the command (which may contain spaces) are utime, stime.
        total=$((total + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
    done
    echo "$total"
}
HZ=$(getconf CLK_TCK)

# One measured run: prints "requests req/s p50 p99 req-per-cpu-s".
measure() {
    local pid=$1 url=$2
    taskset -c 1 wrk -t1 -c$CONNS -d${WARM}s "$url" >/dev/null
    local before after out
    before=$(ticks "$pid")
    out=$(taskset -c 1 wrk -t1 -c$CONNS -d${SECS}s --latency "$url")
    after=$(ticks "$pid")
    local requests rps p50 p99
    requests=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
    local cpu_ticks=$((after - before))
    [ "$cpu_ticks" -gt 0 ] || cpu_ticks=1
    local per_cpu=$((requests * HZ / cpu_ticks))
    echo "$requests $rps $p50 $p99 $per_cpu"
}

printf '%-12s %-6s %5s %12s %9s %9s %16s\n' server path round "req/s" p50 p99 "req/server-CPU-s"
declare -A SUM
for path in /small /16k; do
    for r in $(seq "$ROUNDS"); do
        for server in uringreplay nginx; do
            if [ $server = uringreplay ]; then pid=$UR_PID port=$UR_PORT; else pid=$NG_PID port=$NG_PORT; fi
            read -r _ rps p50 p99 per_cpu < <(measure "$pid" "http://127.0.0.1:$port$path")
            printf '%-12s %-6s %5s %12s %9s %9s %16s\n' $server $path "$r" "$rps" "$p50" "$p99" "$per_cpu"
            SUM[$server$path]=$(( ${SUM[$server$path]:-0} + per_cpu ))
        done
    done
done
echo
for path in /small /16k; do
    u=$(( SUM[uringreplay$path] / ROUNDS )); n=$(( SUM[nginx$path] / ROUNDS ))
    echo "$path: uringreplay $u vs nginx $n req/server-CPU-s: $(awk -v a="$u" -v b="$n" 'BEGIN {printf "%.2f", a / b}')x"
done
