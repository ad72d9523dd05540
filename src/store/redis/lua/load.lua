-- Resolves a token digest to its session, refreshing it on the way.
-- KEYS[1] token key. ARGV[3] digest, [4] now, [5] refresh_after, [6] cijs.
-- Reply: {'missing'} | {'stale', id} | {'found', id, 'current'|'grace', sealed, seen, flat}
local hash, now = ARGV[3], tonumber(ARGV[4])
local refresh_after, cijs = tonumber(ARGV[5]), tonumber(ARGV[6])
local id = redis.call('GET', KEYS[1])
if not id then return {'missing'} end
local s, flat = alive(BASE, id, now, whole)
if not s then
  -- A token key whose session is gone (or just ended) goes too.
  redis.call('DEL', KEYS[1])
  return {'missing'}
end
local k = skey(s)
local state, sealed, changed = nil, '', false
if s.cur == hash then
  if s.adopted ~= '1' then
    -- A replacement presented after it lapsed never works again.
    if now >= tonumber(s.lapse) then return {'missing'} end
    s.adopted = '1'
    redis.call('HSET', k, 'adopted', '1')
    changed = true
  end
  state = 'current'
elseif s.prev == hash then
  if now >= tonumber(s.grace) then return {'stale', id} end
  state = 'grace'
  if s.adopted == '1' or now < tonumber(s.lapse) then
    sealed = s.sealed
    if s.adopted ~= '1' then
      -- About to be sent again: it lives CIJS from now.
      s.lapse = num(now + cijs)
      redis.call('HSET', k, 'lapse', s.lapse)
      changed = true
    end
  end
else
  return {'missing'}
end
if now - tonumber(s.seen) >= refresh_after then
  s.seen = num(now)
  redis.call('HSET', k, 'seen', s.seen)
  changed = true
end
if changed then settle(s, now) end
return {'found', id, state, sealed, s.seen, flat}
