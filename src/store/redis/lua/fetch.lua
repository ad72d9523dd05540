-- Reads a session for a live connection, refreshing the session and the
-- connection's lease. KEYS[1] session key. ARGV[3] id, [4] now,
-- [5] known token digest or '', [6] connection id or '', [7] lease until.
-- Reply: {} | {replacement sealed or '', known is current (0/1), seen, flat}
-- Sent as `ops::Fetch`, read by `reply::fetched` (src/store/redis/): the
-- ARGV order above is the order of that struct's arguments.
local now, known, conn = tonumber(ARGV[4]), ARGV[5], ARGV[6]
local s, flat = alive(BASE, ARGV[3], now, whole)
if not s then return {} end
s.seen = num(now)
put(s)
if conn ~= '' then
  local c = s.base .. 'c:' .. s.id
  local v = redis.call('HGET', c, conn)
  if v then
    local bar = string.find(v, '|', 1, true)
    redis.call('HSET', c, conn, ARGV[7] .. string.sub(v, bar))
  end
end
-- Fetching never adopts a replacement: only a client presenting it does.
local replacement = ''
if known ~= '' and s.prev == known and now < tonumber(s.grace) and s.adopted ~= '1' then
  replacement = redis.call('GET', rkey(s)) or ''
end
local current = 0
if known ~= '' and s.cur == known then current = 1 end
settle(s, now)
return {replacement, current, s.seen, flat}
