-- Replaces a session's token with a grace window for the old one, single
-- flight: the first caller installs its candidate, the others get it sealed.
-- KEYS[1] session key. ARGV[3] id, [4] old digest, [5] new digest,
-- [6] new sealed under old, [7] now, [8] ojs, [9] cijs.
-- Reply: {'installed'} | {'existing', sealed} | {'superseded'} | {'gone'}
-- Sent as `ops::Rotate`, read by `reply::rotated` (src/store/redis/): the
-- ARGV order above is the order of that struct's arguments.
local old, new, sealed = ARGV[4], ARGV[5], ARGV[6]
local now, ojs, cijs = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local s = alive(BASE, ARGV[3], now, meta)
if not s then return {'gone'} end
local in_grace = s.prev == old and now < tonumber(s.grace)
if s.cur == old then
  -- First rotation of the current token: it becomes the previous one, and
  -- the one before it dies for good.
  if s.prev then redis.call('DEL', s.base .. 't:' .. s.prev) end
  s.prev = old
  s.grace = num(now + ojs)
elseif in_grace and s.adopted == '1' then
  -- Rotated by another request, and the client holds the replacement.
  return {'superseded'}
elseif in_grace and now >= tonumber(s.resend) then
  -- The replacement was lost: it dies, and the candidate replaces it under
  -- the same grace window.
  redis.call('DEL', s.base .. 't:' .. s.cur)
elseif in_grace then
  -- Another request rotated first: hand out its replacement, which is
  -- about to be sent again.
  local existing = redis.call('GET', rkey(s))
  if not existing then return {'superseded'} end
  s.resend = num(now + cijs)
  put(s)
  return {'existing', existing}
else
  return {'gone'}
end
s.cur = new
s.adopted = '0'
s.resend = num(now + cijs)
s.ttg = num(now)
s.rot = s.ttg
s.renew = nil
put(s)
-- The sealed replacement lives until the grace window ends, at most.
redis.call('SET', rkey(s), sealed, 'PX', num(math.max(tonumber(s.grace) - now, 1)))
redis.call('SET', s.base .. 't:' .. new, s.id)
settle(s, now)
return {'installed'}
