-- Applies a delta to a live session; never brings a session back.
-- KEYS[1] session key. ARGV[3] id, [4] now, [5..] the delta.
local now = tonumber(ARGV[4])
local s = alive(BASE, ARGV[3], now, meta)
if not s then return 0 end
apply(s, read_delta(5))
settle(s, now)
return 1
