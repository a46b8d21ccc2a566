-- Every request from a new client address: an X-Forwarded-For header that
-- nginx's realip module turns into $remote_addr. Arguments: `-- START
-- [COUNT]`. Request n (counting from START) plays address n, or n modulo
-- COUNT when COUNT is given (the same COUNT addresses over and over).
-- Address i is
--   i even: IPv4 10.a.b.c            (k = i / 2, up to 16.7 million)
--   i odd:  IPv6 2001:db8:X:Y::1     (k = (i - 1) / 2)
-- so without COUNT no address repeats within a run, nor across runs whose
-- STARTs are further apart than the number of requests a run generates.
-- Use with one thread (-t1): the counter is per thread.

local n = 0
local count = nil

function init(args)
  n = tonumber(args[1] or "0")
  count = tonumber(args[2] or "")
  generated = 0
end

local function address(i)
  local k = math.floor(i / 2)
  if i % 2 == 0 then
    return string.format("10.%d.%d.%d",
      math.floor(k / 65536) % 256, math.floor(k / 256) % 256, k % 256)
  end
  return string.format("2001:db8:%x:%x::1", math.floor(k / 65536) % 65536, k % 65536)
end

function request()
  wrk.headers["X-Forwarded-For"] = address(count and n % count or n)
  n = n + 1
  generated = generated + 1
  return wrk.format()
end

-- setup() runs in the main state for each thread: keep them so done() can
-- read how many addresses each one generated.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do
    total = total + t:get("generated")
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d generated=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, total, e.connect, e.read, e.write, e.status, e.timeout))
end
