-- Replaces every token of a session, with no grace window, and applies a
-- delta. KEYS[1] session key. ARGV[3] id, [4] new digest, [5] now, [6..] delta.
-- Reply: 1 if the session is live, else 0.
-- Sent as `ops::Regenerate`, read by `reply::flag` (src/store/redis/): the
-- ARGV order above is the order of that struct's arguments.
local now = tonumber(ARGV[5])
local s = alive(BASE, ARGV[3], now, meta)
if not s then return 0 end
local dead = {s.base .. 't:' .. s.cur}
if s.prev then dead[#dead + 1] = s.base .. 't:' .. s.prev end
dead[#dead + 1] = rkey(s)
redis.call('DEL', unpack(dead))
s.prev, s.grace, s.resend, s.renew = nil, nil, nil, nil
s.cur = ARGV[4]
s.adopted = '1'
s.ttg = num(now)
put(s)
redis.call('SET', s.base .. 't:' .. s.cur, s.id)
apply(s, read_delta(6))
settle(s, now)
return 1
