-- The live connections of a user's live sessions; expired leases are
-- dropped on the way. KEYS[1] user index. ARGV[3] user id, [4] now.
-- Reply: connection json values.
local now = tonumber(ARGV[4])
local out = {}
for _, s in ipairs(user_sessions(BASE, ARGV[3], now)) do
  local c = s.base .. 'c:' .. s.id
  local flat = redis.call('HGETALL', c)
  for i = 1, #flat, 2 do
    local v = flat[i + 1]
    local bar = string.find(v, '|', 1, true)
    if bar and tonumber(string.sub(v, 1, bar - 1)) > now then
      out[#out + 1] = string.sub(v, bar + 1)
    else
      redis.call('HDEL', c, flat[i])
    end
  end
end
return out
