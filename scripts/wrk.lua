-- wrk script shared by scripts/bench.sh and scripts/ab.sh: an optional walk over /item/N
-- (WALK_N; stride 7919, a permutation for N coprime to it), optional Connection: close (CLOSE=1),
-- and one summary line "RESULT requests rps errors p50 p99 p99.9 duration" (latencies and
-- duration in µs; wrk's own --latency output stops at p99).
local n = tonumber(os.getenv("WALK_N") or "0")
if n > 0 then
  local i = 0
  request = function()
    i = i + 1
    return wrk.format(nil, "/item/" .. ((i * 7919) % n))
  end
end
if os.getenv("CLOSE") == "1" then wrk.headers["Connection"] = "close" end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %.0f %d %d %d %d %d\n", summary.requests,
    summary.requests / (summary.duration / 1e6), e.connect + e.read + e.write + e.timeout + e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), summary.duration))
end
