-- Applies a delta to a live session; never brings a session back.
-- On one server with Functions a delta of data alone goes as a transaction
-- instead (`ops::write_data`), and this runs after it, as a touch (an empty
-- delta), only when that found the session past its deadline or due to
-- slide it.
-- KEYS[1] session key. ARGV[3] id, [4] now, [5..] the delta.
-- Reply: 1 if the session is live, else 0.
-- Sent as `ops::Save`, read by `reply::flag` (src/store/redis/): the
-- ARGV order above is the order of that struct's arguments.
local now = tonumber(ARGV[4])
local s = alive(BASE, ARGV[3], now, meta)
if not s then return 0 end
local before = expires_at(s)
apply(s, read_delta(5))
-- A write is a use. The load before it has usually slid the deadline
-- already; this is for writes after a silent load, at a load's granularity
-- (a tenth of the idle timeout), so most writes settle nothing.
if refresh_due(s, now, tonumber(s.idle)) then
  s.seen = num(now)
  put(s)
end
-- Only a new idle timeout moves the expiry; otherwise every TTL and index
-- score is already exact (HSET keeps a key's TTL), and settling again
-- would only repeat them.
if expires_at(s) ~= before then settle(s, now) end
return 1
