-- wrk script shared by scripts/bench.sh and scripts/ab.sh: an optional walk over /item/N
-- (WALK_N; stride 7919, a permutation for N coprime to it), an optional miss rate (MISS_EVERY=K: one
-- request in K asks /miss/I), optional Connection: close (CLOSE=1),
-- and one summary line "RESULT requests rps errors p50 p99 p99.9 duration" (latencies and
-- duration in µs; wrk's own --latency output stops at p99).
local n = tonumber(os.getenv("WALK_N") or "0")
-- MISS_EVERY=K: request number K, 2K, ... asks /miss/I, a path no recording has (a miss to forward).
local k = tonumber(os.getenv("MISS_EVERY") or "0")
if n > 0 or k > 0 then
  local i = 0
  request = function()
    i = i + 1
    if k > 0 and i % k == 0 then return wrk.format(nil, "/miss/" .. i) end
    if n > 0 then return wrk.format(nil, "/item/" .. ((i * 7919) % n)) end
    return wrk.format(nil)
  end
end
if os.getenv("CLOSE") == "1" then wrk.headers["Connection"] = "close" end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %.0f %d %d %d %d %d\n", summary.requests,
    summary.requests / (summary.duration / 1e6), e.connect + e.read + e.write + e.timeout + e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), summary.duration))
end
