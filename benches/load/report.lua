-- wrk script used by benches/load.sh: prints one machine-readable line at the
-- end of a run (latencies in microseconds, exact from wrk's histogram) so the
-- script does not have to parse the unit-suffixed "--latency" text. Defines
-- only done(), so wrk keeps its fast path (static request, no per-response Lua).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "LOADBENCH requests=%d duration_us=%d bytes=%d " ..
    "p50_us=%d p90_us=%d p99_us=%d max_us=%d mean_us=%.1f " ..
    "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
