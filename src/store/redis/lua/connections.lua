-- The live connections of one chunk of a user's live sessions; expired
-- leases are dropped on the way. KEYS[1] user index. ARGV[3] user id,
-- [4] now, [5] cursor.
-- Reply: {next cursor ('0': done), connection json values}
-- Sent as `ops::Connections`, read by `reply::chunk + reply::connections` (src/store/redis/): the
-- ARGV order above is the order of that struct's arguments.
local now = tonumber(ARGV[4])
local list, cursor = user_chunk(BASE, ARGV[3], ARGV[5], now)
local out = {}
for _, s in ipairs(list) do
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
return {cursor, out}
