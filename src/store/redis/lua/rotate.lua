-- Replaces a session's token with a grace window for the old one, single
-- flight: the first caller installs its candidate, the others get it sealed.
-- KEYS[1] session key. ARGV[3] id, [4] old digest, [5] new digest,
-- [6] new sealed under old, [7] now, [8] ojs, [9] cijs.
-- Reply: {'installed'} | {'existing', sealed} | {'gone'}
local old, new, sealed = ARGV[4], ARGV[5], ARGV[6]
local now, ojs, cijs = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local s = alive(BASE, ARGV[3], now, meta)
if not s then return {'gone'} end
local k = skey(s)
local lapsed = s.adopted ~= '1' and now >= tonumber(s.lapse)
local grace_of_old = s.prev == old and now < tonumber(s.grace)
if s.cur == old and not lapsed then
  -- First rotation of the current token: it becomes the previous one, and
  -- the one before it dies for good.
  if s.prev then redis.call('DEL', s.base .. 't:' .. s.prev) end
  s.prev = old
  s.grace = num(now + ojs)
elseif grace_of_old and lapsed then
  -- The replacement was never presented: discard it for good.
  redis.call('DEL', s.base .. 't:' .. s.cur)
elseif grace_of_old then
  -- Another request rotated first: hand out its replacement, which is
  -- about to be sent again.
  if s.adopted ~= '1' then
    s.lapse = num(now + cijs)
    redis.call('HSET', k, 'lapse', s.lapse)
    settle(s, now)
  end
  return {'existing', s.sealed}
else
  return {'gone'}
end
s.sealed = sealed
s.cur = new
s.adopted = '0'
s.lapse = num(now + cijs)
s.ttg = num(now)
s.rot = s.ttg
redis.call('HSET', k, 'prev', s.prev, 'grace', s.grace, 'sealed', s.sealed, 'cur', s.cur,
           'adopted', s.adopted, 'lapse', s.lapse, 'ttg', s.ttg, 'rot', s.rot)
redis.call('SET', s.base .. 't:' .. new, s.id)
settle(s, now)
return {'installed'}
