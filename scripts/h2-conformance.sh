#!/usr/bin/env bash
# HTTP/2 conformance of the h2c listener: httpwg-cli (an h2spec successor, 107 checks of RFC 9113)
# against uringreplay replaying a recording that answers `GET /` and `POST /` with a small body
# (several checks need a response body to watch flow control).
#
#   scripts/h2-conformance.sh             # builds (debug), installs httpwg-cli if missing, runs
#   UR=target/release/uringreplay scripts/h2-conformance.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
UR=${UR:-$ROOT/target/debug/uringreplay}
PORT=${PORT:-18915}
WORK=$(mktemp -d /tmp/uringreplay-h2c.XXXXXX)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

command -v httpwg >/dev/null || nice cargo install httpwg-cli --locked
[ -x "$UR" ] || (cd "$ROOT" && cargo build --quiet --bin uringreplay)

entry() { # METHOD SECOND
    cat <<JSON
{"startedDateTime":"2026-11-27T00:00:0$2.000Z","time":1,
 "request":{"method":"$1","url":"http://127.0.0.1:8080/","httpVersion":"HTTP/1.1","headers":[{"name":"Host","value":"127.0.0.1:8080"}],"queryString":[],"cookies":[],"headersSize":-1,"bodySize":0},
 "response":{"status":200,"statusText":"OK","httpVersion":"HTTP/1.1","headers":[{"name":"Content-Type","value":"text/plain"},{"name":"Content-Length","value":"24"}],"cookies":[],"content":{"size":24,"mimeType":"text/plain","text":"hello from the recording"},"redirectURL":"","headersSize":-1,"bodySize":24},
 "cache":{},"timings":{"send":0,"wait":1,"receive":0}}
JSON
}
{
    echo '{"log":{"version":"1.2","creator":{"name":"h2-conformance.sh","version":"1"},"entries":['
    entry GET 0; echo ','; entry POST 1
    echo ']}}'
} >"$WORK/conf.har"
"$UR" convert "$WORK/conf.har" -o "$WORK/conf.flows" >/dev/null 2>&1

"$UR" -S "$WORK/conf.flows" --reuse --mode reverse:http://127.0.0.1:8080 -p "$PORT" --threads 1 \
    >"$WORK/server.out" 2>&1 &
PID=$!
for _ in $(seq 100); do grep -q "^listening on" "$WORK/server.out" && break; sleep 0.05; done
httpwg -a "127.0.0.1:$PORT" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' | grep -E "Test failed|Passed"
