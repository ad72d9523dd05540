-- Registers a connection under a live session.
-- KEYS[1] session key. ARGV[3] id, [4] now, [5] connection id,
-- [6] `<lease until>|<connection json>`.
local now = tonumber(ARGV[4])
local s = alive(BASE, ARGV[3], now, meta)
if not s then return 0 end
s.seen = num(now)
redis.call('HSET', skey(s), 'seen', s.seen)
redis.call('HSET', s.base .. 'c:' .. s.id, ARGV[5], ARGV[6])
settle(s, now)
return 1
