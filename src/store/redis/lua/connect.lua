-- Registers a connection under a live session.
-- KEYS[1] session key. ARGV[3] id, [4] now, [5] connection id,
-- [6] `<lease until>|<connection json>`.
-- Reply: 1 if the session is live, else 0.
-- Sent as `ops::Connect`, read by `reply::flag` (src/store/redis/): the
-- ARGV order above is the order of that struct's arguments.
local now = tonumber(ARGV[4])
local s = alive(BASE, ARGV[3], now, meta)
if not s then return 0 end
s.seen = num(now)
put(s)
local c = s.base .. 'c:' .. s.id
-- Leases of crashed holders ran out: drop them, so they cannot pile up.
local flat = redis.call('HGETALL', c)
for i = 1, #flat, 2 do
  local bar = string.find(flat[i + 1], '|', 1, true)
  if not bar or tonumber(string.sub(flat[i + 1], 1, bar - 1)) <= now then
    redis.call('HDEL', c, flat[i])
  end
end
redis.call('HSET', c, ARGV[5], ARGV[6])
settle(s, now)
return 1
