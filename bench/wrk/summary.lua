-- Static load (same request every time, headers given with -H): only
-- prints wrk's totals on one machine-readable line for the bench to parse.

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d generated=0 connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout))
end
