#!/usr/bin/env bash
# The project's benchmark: uringreplay side by side with nginx and mitmdump on loopback.
#
#   scripts/bench.sh                      # defaults: 4 alternating rounds, 5 s measured, 2 s warm-up
#   ROUNDS=5 SECS=8 scripts/bench.sh      # longer
#   CASES="small 16k" scripts/bench.sh    # some cases only (small c256 close 16k tls tls16k tlsclose h2 h2tls scale mitm)
#   UR_ALT=/tmp/other-build scripts/bench.sh  # also measure another uringreplay binary (A/B)
#   CEILING_DIR=/path/to/shared/bench/ceiling scripts/bench.sh  # where the ceiling responders are
#
# It builds uringreplay in release, installs wrk and nginx (Debian) and mitmproxy (PyPI, in a
# virtualenv under ~/.cache/uringreplay-bench) when missing, generates the recordings, then runs
# every server pinned to CPU 0 (uringreplay with one worker thread, nginx with one worker) with
# wrk -t1 pinned to CPU 1. wrk saturates before fast servers do, so the ranking figure is requests
# per server-CPU-second: requests completed ÷ (user + sys) CPU seconds of the server's processes
# over the same window (from /proc/PID/stat). Servers alternate within each round, each round
# starting one server later; the table shows
# medians over rounds. Compare figures only inside one run: this machine drifts by ±10 %.
# The ceiling responders of ../shared/bench/ceiling (bare io_uring, monoio and epoll servers that
# answer fixed bytes) run in the same rounds of the small, c256 and 16k cases when that directory
# is there (built once, outside it, under ~/.cache/uringreplay-bench); every row then also gets its
# ratio to the best responder of its case. Only 127.0.0.1 is used. Every load run is bounded by wrk's -d; the whole run takes ≈ 13 min.
set -euo pipefail

ROUNDS=${ROUNDS:-4}
SECS=${SECS:-5}
WARM=${WARM:-2}
CASES=${CASES:-"small c256 close 16k tls tls16k tlsclose h2 h2tls scale mitm"}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/uringreplay-bench
WORK=$(mktemp -d /tmp/uringreplay-bench.XXXXXX)
COMMAND="ROUNDS=$ROUNDS SECS=$SECS WARM=$WARM CASES=\"$CASES\" scripts/bench.sh"
SERVER_CPU=0
LOAD_CPU=1
BASE_PORT=18100
HZ=$(getconf CLK_TCK)

declare -A PID PORT SCHEME # running servers by name (SCHEME: http, or https for NAME-tls)
declare -A STARTUP        # seconds from spawn to the first answer, by server name
declare -A RESULT         # "case|server" -> lines "rps p50 p99 p999 per_cpu errors foreign"

log() { echo "$*" >&2; }

cleanup() {
    for name in "${!PID[@]}"; do kill "${PID[$name]}" 2>/dev/null || true; done
    for name in "${!PID[@]}"; do wait "${PID[$name]}" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 130" INT TERM

want() { [[ " $CASES " == *" $1 "* ]]; }

# ---------------------------------------------------------------------------------------------
# Tools
need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need nginx; then
    log "installing wrk and nginx-light (apt-get)"
    apt-get update -qq && apt-get install -y -qq wrk nginx-light >/dev/null
fi
if { want h2 || want h2tls; } && ! need h2load; then
    log "installing h2load (apt-get nghttp2-client)"
    apt-get update -qq && apt-get install -y -qq nghttp2-client >/dev/null
fi

# mitmproxy 12 needs Python >= 3.12: the first such interpreter on PATH or in pyenv, else python3
# with mitmproxy 11 (said in the output).
MITM_NOTE=""
if want mitm; then
    PY=""
    for c in python3.13 python3.12 python3.14; do "$c" -c '' 2>/dev/null && { PY=$(command -v "$c"); break; }; done
    if [ -z "$PY" ] && need pyenv; then
        for v in $(ls "$(pyenv root)/versions" 2>/dev/null | sort -rV); do
            case $v in 3.1[2-9]* ) PY="$(pyenv root)/versions/$v/bin/python3"; break ;; esac
        done
    fi
    MITM_SPEC='mitmproxy>=12,<13'
    if [ -z "$PY" ]; then
        PY=$(command -v python3)
        MITM_SPEC='mitmproxy<12'
        MITM_NOTE=" (no Python >= 3.12 on this machine: mitmproxy 11 on $($PY --version 2>&1))"
    fi
    VENV=$CACHE/venv-$($PY -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    if [ ! -x "$VENV/bin/mitmdump" ]; then
        log "installing $MITM_SPEC into $VENV"
        "$PY" -m venv "$VENV"
        "$VENV/bin/pip" install -q "$MITM_SPEC"
    fi
    MITMDUMP=$VENV/bin/mitmdump
fi

log "building (release)"
(cd "$ROOT" && cargo build --release --quiet --bin uringreplay --example bench_flows --example gen_flows)
UR=$TARGET/release/uringreplay
"$TARGET/release/examples/bench_flows" "$WORK/bench.flows"

# The ceiling responders: ../shared/bench/ceiling beside the repository (CI, a clean clone), or
# ../../shared for a worktree one level deeper; read-only, so built with a target dir of ours.
CEILING_DIR=${CEILING_DIR:-}
if [ -z "$CEILING_DIR" ]; then
    for d in "$ROOT/../shared/bench/ceiling" "$ROOT/../../shared/bench/ceiling"; do
        [ -f "$d/Cargo.toml" ] && { CEILING_DIR=$(cd "$d" && pwd); break; }
    done
fi
CEILING=()      # the responders measured in the small and c256 cases
CEILING16K=()   # and in the 16k case
CEILING_NOTE=""
if [ -n "$CEILING_DIR" ] && [ -f "$CEILING_DIR/Cargo.toml" ]; then
    CEILING_TARGET=$CACHE/ceiling-target
    log "building the ceiling responders of $CEILING_DIR (release, into $CEILING_TARGET)"
    if CARGO_TARGET_DIR=$CEILING_TARGET cargo build --release --quiet --manifest-path "$CEILING_DIR/Cargo.toml"; then
        CEILING_BIN=$CEILING_TARGET/release
        for b in uring_basic uring_best monoio_min epoll_mio; do
            [ -x "$CEILING_BIN/$b" ] && CEILING+=("$b")
        done
        for b in uring_basic uring_best; do
            [ -x "$CEILING_BIN/$b" ] && CEILING16K+=("$b")
        done
    else
        CEILING_NOTE="the ceiling responders of $CEILING_DIR did not build; measured without them"
    fi
else
    CEILING_NOTE="no ../shared/bench/ceiling beside the repository (set CEILING_DIR): measured without the ceiling responders"
fi
[ -z "$CEILING_NOTE" ] || log "note: $CEILING_NOTE"

# Recordings for the scale cases: flow i is GET /item/i with a 100-byte body. The consume
# recording has one key (/item/0) recorded often enough that a round never exhausts it.
CONSUME_FLOWS=$(( (WARM + SECS) * 200000 ))
[ "$CONSUME_FLOWS" -ge 1000000 ] || CONSUME_FLOWS=1000000
gen() { "$TARGET/release/examples/gen_flows" --flows "$1" --keys "$2" --body-bytes 100 --out "$3" >/dev/null; }
if want scale; then
    log "generating recordings (1, 10 000, 1 000 000 and $CONSUME_FLOWS flows)"
    gen 1 1 "$WORK/gen1.flows"
    gen 10000 10000 "$WORK/gen10k.flows"
    gen 1000000 1000000 "$WORK/gen1m.flows"
    gen "$CONSUME_FLOWS" 1 "$WORK/consume.flows"
fi

# nginx: one worker; `return 200` with the recording's small response, a static file for 16 KiB.
mkdir -p "$WORK/www" "$WORK/nginx"
head -c 16384 /dev/zero | tr '\0' x >"$WORK/www/16k"
# nginx's worker may run as another user (nobody when started as root): let it read the file.
chmod a+rx "$WORK" "$WORK/www" && chmod a+r "$WORK/www/16k"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    server_tokens off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path $WORK/nginx;
    proxy_temp_path $WORK/nginx;
    fastcgi_temp_path $WORK/nginx;
    uwsgi_temp_path $WORK/nginx;
    scgi_temp_path $WORK/nginx;
    server {
        listen 127.0.0.1:@PORT@ reuseport backlog=4096;
        location = /small {
            add_header Cache-Control max-age=60;
            add_header X-Request-Id bench-0001;
            default_type text/plain;
            return 200 "hello from the recording\n";
        }
        location = /close {
            add_header Cache-Control max-age=60;
            add_header X-Request-Id bench-0001;
            default_type text/plain;
            return 200 "hello from the recording\n";
        }
        location = /16k { root $WORK/www; default_type text/plain; }
    }
}
EOF

# TLS cases: one ECDSA P-256 certificate (for localhost and 127.0.0.1) served by both, uringreplay
# with --certs (its CA created in a confdir of the run, unused), nginx with `ssl`; session
# tickets on in both. The same nginx configuration, with `ssl` on its listener.
mkdir -p "$WORK/tls"
if want tls || want tls16k || want tlsclose || want h2tls; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" -subj /CN=localhost \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
    cat "$WORK/tls/cert.pem" "$WORK/tls/key.pem" >"$WORK/tls/both.pem"
    chmod a+rx "$WORK/tls" && chmod a+r "$WORK/tls/"*.pem
    sed -e "s|listen 127.0.0.1:@PORT@ reuseport|listen 127.0.0.1:@PORT@ ssl reuseport|" \
        -e "s|    server {|    ssl_certificate $WORK/tls/cert.pem;\n    ssl_certificate_key $WORK/tls/key.pem;\n    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_session_tickets on;\n    server {|" \
        "$WORK/nginx/nginx.conf" >"$WORK/nginx/nginx-tls.conf"
fi

# ---------------------------------------------------------------------------------------------
# Servers: start NAME (pinned to the server CPU), stop NAME.
NEXT_PORT=$BASE_PORT
start() {
    local name=$1 probe=/small
    # A port nobody answers on (a leftover server with SO_REUSEPORT would share the load).
    while curl -s -o /dev/null "http://127.0.0.1:$NEXT_PORT/" 2>/dev/null; do NEXT_PORT=$((NEXT_PORT + 1)); done
    local port=$NEXT_PORT
    NEXT_PORT=$((NEXT_PORT + 1))
    local ur_common=(--threads 1 -q --listen-host 127.0.0.1 -p "$port")
    local t0
    t0=$(date +%s.%N)
    local cmd
    case $name in
        uringreplay) cmd=("$UR" -S "$WORK/bench.flows" --reuse "${ur_common[@]}") ;;
        uringreplay-norefresh) cmd=("$UR" -S "$WORK/bench.flows" --reuse --norefresh "${ur_common[@]}") ;;
        uringreplay-alt) cmd=("$UR_ALT" -S "$WORK/bench.flows" --reuse "${ur_common[@]}") ;;
        uringreplay-epoll) cmd=("$UR" -S "$WORK/bench.flows" --reuse --io epoll "${ur_common[@]}") ;;
        uringreplay-monoio) cmd=("$UR" -S "$WORK/bench.flows" --reuse --no-direct-ring "${ur_common[@]}") ;;
        uringreplay-norepeat) cmd=("$UR" -S "$WORK/bench.flows" --reuse --no-repeat-cache "${ur_common[@]}") ;;
        nginx)
            sed "s/@PORT@/$port/" "$WORK/nginx/nginx.conf" >"$WORK/nginx/$port.conf"
            cmd=(nginx -c "$WORK/nginx/$port.conf" -p "$WORK/nginx") ;;
        uringreplay-tls) cmd=("$UR" -S "$WORK/bench.flows" --reuse --certs "$WORK/tls/both.pem"
                --set "confdir=$WORK/tls/confdir" "${ur_common[@]}") ;;
        nginx-tls)
            sed "s/@PORT@/$port/" "$WORK/nginx/nginx-tls.conf" >"$WORK/nginx/$port.conf"
            cmd=(nginx -c "$WORK/nginx/$port.conf" -p "$WORK/nginx") ;;
        nginx-h2-tls)
            # HTTP/2 over TLS, ALPN h2 (and http/1.1 for the probe): the TLS listener with http2.
            sed "s/@PORT@/$port/; s/ ssl reuseport/ ssl http2 reuseport/" \
                "$WORK/nginx/nginx-tls.conf" >"$WORK/nginx/$port.conf"
            cmd=(nginx -c "$WORK/nginx/$port.conf" -p "$WORK/nginx") ;;
        nginx-h2)
            # h2c with prior knowledge (nginx >= 1.19: `listen ... http2` on a plain listener).
            sed "s/@PORT@/$port/; s/ reuseport backlog/ http2 reuseport backlog/" \
                "$WORK/nginx/nginx.conf" >"$WORK/nginx/$port.conf"
            cmd=(nginx -c "$WORK/nginx/$port.conf" -p "$WORK/nginx") ;;
        mitmdump)
            cmd=("$MITMDUMP" -q -S "$WORK/bench.flows" --mode reverse:http://127.0.0.1:8080
                --listen-host 127.0.0.1 -p "$port" --set server_replay_reuse=true
                --set connection_strategy=lazy) ;;
        uring_basic | uring_best | monoio_min | epoll_mio)
            cmd=("$CEILING_BIN/$name" "$port" "${KIND:-small}") ;;
        ur-1) cmd=("$UR" -S "$WORK/gen1.flows" --reuse "${ur_common[@]}") ;;
        ur-1-norepeat) cmd=("$UR" -S "$WORK/gen1.flows" --reuse --no-repeat-cache "${ur_common[@]}") ;;
        ur-10k) cmd=("$UR" -S "$WORK/gen10k.flows" --reuse "${ur_common[@]}") ;;
        ur-1m) cmd=("$UR" -S "$WORK/gen1m.flows" --reuse "${ur_common[@]}") ;;
        ur-1m-cycle) cmd=("$UR" -S "$WORK/gen1m.flows" --order cycle "${ur_common[@]}") ;;
        ur-1m-consume) cmd=("$UR" -S "$WORK/consume.flows" "${ur_common[@]}") ;;
        *) log "unknown server $name"; exit 1 ;;
    esac
    [[ $name == ur-* ]] && probe=/item/0
    local scheme=http
    [[ $name == *-tls ]] && scheme=https
    SCHEME[$name]=$scheme
    local probe_opts=()
    [[ $name == nginx-h2 ]] && probe_opts=(--http2-prior-knowledge)
    taskset -c $SERVER_CPU "${cmd[@]}" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    PID[$name]=$!
    PORT[$name]=$port
    local i
    for i in $(seq 600); do
        curl -ksf "${probe_opts[@]}" -o /dev/null "$scheme://127.0.0.1:$port$probe" && break
        kill -0 "${PID[$name]}" 2>/dev/null || break
        sleep 0.05
    done
    if ! curl -ksf "${probe_opts[@]}" -o /dev/null "$scheme://127.0.0.1:$port$probe"; then
        log "$name did not start:"; cat "$WORK/$name.err" "$WORK/nginx/error.log" 2>/dev/null >&2 || true
        exit 1
    fi
    STARTUP[$name]=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
}
stop() {
    local name=$1
    kill "${PID[$name]}" 2>/dev/null || true
    wait "${PID[$name]}" 2>/dev/null || true
    unset "PID[$name]"
}

# CPU ticks (user + sys, all threads) of a process and its children (nginx: master and worker).
ticks() {
    local total=0 p
    for p in "$1" $(pgrep -P "$1" || true); do
        [ -r "/proc/$p/stat" ] || continue
        # Fields 14 and 15 (utime, stime); the command before them may contain spaces.
        total=$((total + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
    done
    echo "$total"
}
# Busy ticks (user nice system irq softirq) of CPU N from /proc/stat.
busy() { awk -v c="cpu$1" '$1 == c {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
KSOFTIRQD=$(pgrep -x "ksoftirqd/$SERVER_CPU" || true)
# CPU ticks of every process on the machine (to see foreign load during a round).
all_ticks() { cat /proc/[0-9]*/stat 2>/dev/null | sed 's/.*) //' | awk '{s += $12 + $13} END {print s + 0}'; }


# One load run: wrk (HTTP/1.1), or h2load when H2_STREAMS is set (streams per connection): over
# h2c with prior knowledge for an http URL, over TLS with ALPN h2 for an https one; either way the output ends in wrk.lua's RESULT line (h2load reports
# no percentiles: "-").
load() {
    local url=$1 conns=$2 secs=$3 walk=$4 close=$5 out=$6
    if [ -z "${H2_STREAMS:-}" ]; then
        WALK_N=$walk CLOSE=$close taskset -c $LOAD_CPU wrk -t1 -c"$conns" -d"${secs}s" -s "$ROOT/scripts/wrk.lua" "$url" >"$out"
        return
    fi
    taskset -c $LOAD_CPU h2load -t1 -c"$conns" -m"$H2_STREAMS" -D"$secs" "$url" >"$WORK/h2load.out" 2>&1 || true
    awk '/^finished in/ {d = $3; sub(/s,$/, "", d); rps = $4}
         /^requests:/ {ok = $8; bad = $10 + $12 + $14}
         /^status codes:/ {bad += $5 + $7 + $9}
         END {printf "RESULT %d %.0f %d - - - %d\n", ok, rps, bad, d * 1000000}' "$WORK/h2load.out" >"$out"
}

# One measured run against server NAME: warm-up, then SECS measured.
# Prints "rps p50 p99 p999 per_cpu errors foreign per_core" (latencies in µs): per_cpu counts the
# server's processes' CPU time; per_core all busy time of the server's core, which also holds the
# kernel's loopback TCP work for the server done in interrupt context or ksoftirqd (task times can
# leave it out), but also any foreign process that ran there (see the foreign column).
measure() {
    local name=$1 path=$2 conns=$3 secs=$4 walk=${5:-0} close=${6:-0}
    local pid=${PID[$name]} url="${SCHEME[$name]}://127.0.0.1:${PORT[$name]}$path"
    if [ "$walk" = auto ]; then
        case $name in ur-10k) walk=10000 ;; ur-1m | ur-1m-cycle) walk=1000000 ;; *) walk=1 ;; esac
    fi
    load "$url" "$conns" "$WARM" "$walk" "$close" /dev/null
    local m0 t0 k0 a0
    a0=$(all_ticks)
    m0=$(busy $SERVER_CPU)
    t0=$(ticks "$pid")
    k0=$( [ -n "$KSOFTIRQD" ] && ticks "$KSOFTIRQD" || echo 0)
    load "$url" "$conns" "$secs" "$walk" "$close" "$WORK/wrk.out"
    local t1 m1 k1
    t1=$(ticks "$pid")
    k1=$( [ -n "$KSOFTIRQD" ] && ticks "$KSOFTIRQD" || echo 0)
    m1=$(busy $SERVER_CPU)
    local a1
    a1=$(all_ticks)
    local requests rps errors p50 p99 p999 duration
    read -r _ requests rps errors p50 p99 p999 duration < <(grep '^RESULT' "$WORK/wrk.out")
    local cpu=$((t1 - t0)) core=$((m1 - m0))
    [ "$cpu" -gt 0 ] || cpu=1
    [ "$core" -gt 0 ] || core=1
    local per_cpu=$((requests * HZ / cpu)) per_core=$((requests * HZ / core))
    # Foreign load, as % of one core over the window: busy time of the server's core that neither
    # the server nor ksoftirqd had (short-lived processes such as compilers show only here), or
    # CPU time of other long-running processes anywhere (wrk ran and ended inside the window, so
    # it is in neither snapshot), whichever is larger.
    local on_core=$(( (core - cpu - (k1 - k0)) * 100 * 1000000 / (duration * HZ) ))
    local foreign=$(( (a1 - a0 - cpu - (k1 - k0)) * 100 * 1000000 / (duration * HZ) ))
    [ "$foreign" -ge "$on_core" ] || foreign=$on_core
    [ "$foreign" -ge 0 ] || foreign=0
    echo "$rps $p50 $p99 $p999 $per_cpu $errors $foreign $per_core"
}

# run CASE "PATH CONNS SECS WALK CLOSE" SERVER...: alternating rounds; servers marked with a
# trailing '!' are restarted before each round (consume order uses up its recording).
run_case() {
    local case=$1 spec=$2
    shift 2
    local path conns secs walk close
    read -r path conns secs walk close <<<"$spec"
    local s name
    for s in "$@"; do [[ $s == *! ]] || start "$s"; done
    # Each round starts one server later than the one before, so no server always runs first.
    # (The first server *started* in a case measured slower in four runs anyway, whichever it
    # was: see the README's issue 13 runs; the cause is not known.)
    local servers=("$@") n=$# r i
    for r in $(seq "$ROUNDS"); do
        for ((i = 0; i < n; i++)); do
            s=${servers[$(((i + r - 1) % n))]}
            name=${s%!}
            [[ $s == *! ]] && start "$name"
            local line
            line=$(measure "$name" "$path" "$conns" "$secs" "$walk" "$close")
            log "$(printf '%-14s %-22s round %s: %s' "$case" "$name" "$r" "$line")"
            RESULT[$case|$name]+="$line"$'\n'
            [[ $s == *! ]] && stop "$name"
        done
    done
    for s in "$@"; do [[ $s == *! ]] || stop "${s%!}"; done
}

# Median of column COL (1-based) of the rounds of "case|server".
median() {
    local rows
    rows=$(printf '%s' "${RESULT[$1]}" | awk 'NF && $7 <= 10')
    [ -n "$rows" ] || rows=${RESULT[$1]}
    printf '%s\n' "$rows" | awk -v c="$2" 'NF {print $c}' | sort -g |
        awk '{v[NR] = $1} END {if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
ms() { awk -v u="$1" 'BEGIN {if (u == "-") print "-"; else printf "%.2f", u / 1000}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f×", a / b}'; }

# ---------------------------------------------------------------------------------------------
log "measuring: $ROUNDS rounds × ${SECS} s (+ ${WARM} s warm-up) per server and case"
# KIND tells the ceiling responders which fixed answer to give (small or 16k).
want small && KIND=small run_case small "/small 64 $SECS 0 0" uringreplay nginx uringreplay-norefresh uringreplay-norepeat uringreplay-epoll uringreplay-monoio ${UR_ALT:+uringreplay-alt} "${CEILING[@]}"
want c256 && KIND=small run_case c256 "/small 256 $SECS 0 0" uringreplay nginx uringreplay-monoio "${CEILING[@]}"
want close && run_case close "/close 64 $SECS 0 1" uringreplay nginx ${UR_ALT:+uringreplay-alt}
want 16k && KIND=16k run_case 16k "/16k 64 $SECS 0 0" uringreplay nginx uringreplay-monoio ${UR_ALT:+uringreplay-alt} "${CEILING16K[@]}"
if want scale; then
    # Each server walks its own keys: /item/(i * 7919 mod keys).
    run_case scale "/ 64 $SECS auto 0" ur-1 ur-1-norepeat ur-10k ur-1m ur-1m-cycle ur-1m-consume!
fi
want tls && run_case tls "/small 64 $SECS 0 0" uringreplay-tls nginx-tls
want tls16k && run_case tls16k "/16k 64 $SECS 0 0" uringreplay-tls nginx-tls
want tlsclose && run_case tlsclose "/close 64 $SECS 0 1" uringreplay-tls nginx-tls
if want h2; then
    # HTTP/2 over h2c with prior knowledge: uringreplay on its one port, nginx on `listen http2`.
    H2_STREAMS=16 run_case h2c16 "/small 16 $SECS 0 0" uringreplay nginx-h2
    H2_STREAMS=1 run_case h2c64 "/small 64 $SECS 0 0" uringreplay nginx-h2
fi
if want h2tls; then
    # HTTP/2 over TLS (ALPN h2), the certificate of the TLS cases: uringreplay with --certs,
    # nginx on `listen ... ssl http2`.
    H2_STREAMS=16 run_case h2tls16 "/small 16 $SECS 0 0" uringreplay-tls nginx-h2-tls
    H2_STREAMS=1 run_case h2tls64 "/small 64 $SECS 0 0" uringreplay-tls nginx-h2-tls
fi
MITM_SECS=$(( SECS < 5 ? SECS : 5 ))
want mitm && run_case mitm "/small 64 $MITM_SECS 0 0" mitmdump uringreplay

# ---------------------------------------------------------------------------------------------
# The report (stdout): machine, tools, command, one table of medians.
echo "### uringreplay benchmark"
echo
echo "- machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), kernel $(uname -r), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM"
echo "- tools: $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'), $(nginx -v 2>&1 | sed 's/.*: //')$(want mitm && echo ", mitmproxy $("$MITMDUMP" --version | awk '/^Mitmproxy/ {print $2}') on Python $("$MITMDUMP" --version | awk '/^Python/ {print $2}')$MITM_NOTE"), uringreplay $(grep -o 'on [a-z_]* ([^)]*)\|on epoll' "$WORK/uringreplay.err" 2>/dev/null | head -1 | sed 's/^on //')"
echo "- servers on CPU $SERVER_CPU (one worker), wrk -t1 on CPU $LOAD_CPU; $ROUNDS alternating rounds of ${SECS} s after ${WARM} s warm-up (mitmdump case: ${MITM_SECS} s); medians"
echo "- command: \`$COMMAND\`"
if [ -n "$CEILING_NOTE" ]; then echo "- $CEILING_NOTE"; else echo "- ceiling responders: $CEILING_DIR (${CEILING[*]})"; fi
echo
echo "| case | server | req/s | p50 ms | p99 ms | p99.9 ms | req/server-CPU-s | ratio | req/core-CPU-s | ratio | vs best | errors | foreign CPU % |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
# The best req/server-CPU-s median of a case among every server measured in it.
best() {
    local k b=0 v
    for k in "${!RESULT[@]}"; do
        [[ $k == "$1|"* ]] || continue
        v=$(median "$k" 5)
        if [ "$v" != "-" ] && awk -v v="$v" -v b="$b" 'BEGIN {exit !(v > b)}'; then b=$v; fi
    done
    echo "$b"
}
row() {
    local case=$1 label=$2 name=$3 ref=${4:-}
    local key="$case|$name"
    [ -n "${RESULT[$key]:-}" ] || return 0
    local per core r1="" r2=""
    per=$(median "$key" 5)
    core=$(median "$key" 8)
    if [ -n "$ref" ]; then
        r1=$(ratio "$per" "$(median "$ref" 5)")
        r2=$(ratio "$core" "$(median "$ref" 8)")
    fi
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$name" \
        "$(median "$key" 1)" "$(ms "$(median "$key" 2)")" "$(ms "$(median "$key" 3)")" \
        "$(ms "$(median "$key" 4)")" "$per" "$r1" "$core" "$r2" "$(ratio "$per" "$(best "$case")")" \
        "$(median "$key" 6)" "$(median "$key" 7)"
}
row small "small, keep-alive, 64 conns" uringreplay "small|nginx"
row small "small, keep-alive, 64 conns" uringreplay-norefresh "small|nginx"
row small "small, keep-alive, 64 conns" uringreplay-norepeat "small|nginx"
row small "small, keep-alive, 64 conns" uringreplay-epoll "small|nginx"
row small "small, keep-alive, 64 conns" uringreplay-monoio "small|nginx"
row small "small, keep-alive, 64 conns" uringreplay-alt "small|nginx"
row small "small, keep-alive, 64 conns" nginx
for b in "${CEILING[@]}"; do row small "small, keep-alive, 64 conns (ceiling responder)" "$b" "small|nginx"; done
row c256 "small, keep-alive, 256 conns" uringreplay "c256|nginx"
row c256 "small, keep-alive, 256 conns" uringreplay-monoio "c256|nginx"
row c256 "small, keep-alive, 256 conns" nginx
for b in "${CEILING[@]}"; do row c256 "small, keep-alive, 256 conns (ceiling responder)" "$b" "c256|nginx"; done
row close "small, new connection per request" uringreplay "close|nginx"
row close "small, new connection per request" uringreplay-alt "close|nginx"
row close "small, new connection per request" nginx
row 16k "16 KiB, keep-alive, 64 conns" uringreplay "16k|nginx"
row 16k "16 KiB, keep-alive, 64 conns" uringreplay-monoio "16k|nginx"
row 16k "16 KiB, keep-alive, 64 conns" uringreplay-alt "16k|nginx"
row 16k "16 KiB, keep-alive, 64 conns (nginx: static file)" nginx
for b in "${CEILING16K[@]}"; do row 16k "16 KiB, keep-alive, 64 conns (ceiling responder)" "$b" "16k|nginx"; done
row tls "TLS, small, keep-alive, 64 conns" uringreplay-tls "tls|nginx-tls"
row tls "TLS, small, keep-alive, 64 conns" nginx-tls
row tls16k "TLS, 16 KiB, keep-alive, 64 conns" uringreplay-tls "tls16k|nginx-tls"
row tls16k "TLS, 16 KiB, keep-alive, 64 conns (nginx: static file)" nginx-tls
row tlsclose "TLS, new connection (full handshake) per request" uringreplay-tls "tlsclose|nginx-tls"
row tlsclose "TLS, new connection (full handshake) per request" nginx-tls
row h2c16 "small, h2c, 16 conns × 16 streams (h2load)" uringreplay "h2c16|nginx-h2"
row h2c16 "small, h2c, 16 conns × 16 streams (h2load)" nginx-h2
row h2c64 "small, h2c, 64 conns × 1 stream (h2load)" uringreplay "h2c64|nginx-h2"
row h2c64 "small, h2c, 64 conns × 1 stream (h2load)" nginx-h2
row h2tls16 "small, h2 over TLS, 16 conns × 16 streams (h2load)" uringreplay-tls "h2tls16|nginx-h2-tls"
row h2tls16 "small, h2 over TLS, 16 conns × 16 streams (h2load)" nginx-h2-tls
row h2tls64 "small, h2 over TLS, 64 conns × 1 stream (h2load)" uringreplay-tls "h2tls64|nginx-h2-tls"
row h2tls64 "small, h2 over TLS, 64 conns × 1 stream (h2load)" nginx-h2-tls
row scale "1 flow, reuse (every request a repeat)" ur-1
row scale "1 flow, reuse, --no-repeat-cache (every request matched)" ur-1-norepeat "scale|ur-1"
row scale "10 k flows, reuse (walk of 10 k keys)" ur-10k "scale|ur-1-norepeat"
row scale "1 M flows, reuse (walk of 1 M keys)" ur-1m "scale|ur-1-norepeat"
row scale "1 M flows, cycle order (walk of 1 M keys)" ur-1m-cycle "scale|ur-1-norepeat"
row scale "$CONSUME_FLOWS flows of one key, consume order" ur-1m-consume "scale|ur-1-norepeat"
row mitm "small, keep-alive, 64 conns" uringreplay "mitm|mitmdump"
row mitm "small, keep-alive, 64 conns (mitmdump -S)" mitmdump
echo
echo "req/server-CPU-s: requests ÷ CPU seconds of the server's processes (/proc/PID/stat);"
echo "req/core-CPU-s: requests ÷ busy seconds of the server's core (/proc/stat), which also counts kernel"
echo "TCP work for the server done in interrupt context. ratio: against nginx in the same case;"
echo "vs best: req/server-CPU-s against the best server of the same case (the ceiling responders included);"
echo "scale rows: the 1-flow recording without the repeat cache against it with it (every request of that"
echo "row is a repeat), the others against the 1-flow recording without the repeat cache (walks and consume"
echo "order never repeat: they measure the matcher); the last uringreplay row against mitmdump -S."
echo "errors: socket errors + non-2xx answers. foreign CPU: time other processes took on the server's core"
echo "or elsewhere (% of one core over the window); medians leave out rounds above 10 % when any round is"
echo "below (the machine is shared: a row whose foreign figure is above 10 % had no clean round)."
if want scale; then
    echo
    echo "Start-up to first answer (loading included): 1 flow ${STARTUP[ur-1]:-?} s, 10 k flows ${STARTUP[ur-10k]:-?} s, 1 M flows ${STARTUP[ur-1m]:-?} s."
    echo "Heap while serving 1 M flows (recording entries, index and rendered heads): $(grep -o 'heap [^;]*' "$WORK/ur-1m.err" | head -1)."
    echo "Loading alone (\`uringreplay inspect --summary\`, warm page cache): $("$UR" inspect --summary "$WORK/gen1m.flows" 2>&1 | grep -i 'loaded in\|heap added' | tr '\n' ';' | sed 's/;$//; s/;/; /g')."
fi
