-- wrk script: each request carries the next session cookie of a file (one
-- `name=value` a line), each thread starting at its own place in it.
-- Arguments after `--`: the cookie file, then the method (GET or POST).

local threads = 0

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

local cookies = {}
local i = 0
local method = "GET"

function init(args)
  method = args[2] or "GET"
  for line in io.lines(args[1]) do
    if line ~= "" then cookies[#cookies + 1] = line end
  end
  i = (id or 0) * math.floor(#cookies / 2)
end

function request()
  i = i % #cookies + 1
  return wrk.format(method, nil, { ["Cookie"] = cookies[i] })
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_us=%d errors=%d\n",
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout))
end
