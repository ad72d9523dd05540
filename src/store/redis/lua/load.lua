-- Resolves a token digest to its session, refreshing it on the way.
-- Called only for the loads the client's HGETALL of the session cannot
-- decide alone (`reply::settled`): a token in its grace window, a
-- replacement not adopted yet, a refresh due, a session past its deadline.
-- KEYS[1] token key. ARGV[3] digest, [4] now, [5] refresh_after or '' for a
-- silent read, [6] cijs.
-- Reply: {'missing'} | {'stale', id}
--      | {'found', id, 'current'|'replaced'|'superseded'|'lapsed', sealed, seen, flat}
-- Sent as `ops::Load`, read by `reply::lookup` (src/store/redis/): the
-- ARGV order above is the order of that struct's arguments.
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
local state, sealed = nil, ''
if s.cur == hash then
  if s.adopted ~= '1' then
    -- The client holds the replacement: nothing needs handing out again.
    s.adopted = '1'
    put(s)
    redis.call('DEL', rkey(s))
  end
  state = 'current'
elseif s.prev == hash then
  if now >= tonumber(s.grace) then
    redis.call('DEL', rkey(s))
    return {'stale', id}
  end
  if s.adopted == '1' then
    state = 'superseded'
  elseif now >= tonumber(s.resend) then
    state = 'lapsed'
  else
    sealed = redis.call('GET', rkey(s))
    if sealed then
      -- About to be handed out again: it is handed out CIJS from now.
      state = 'replaced'
      s.resend = num(now + cijs)
      put(s)
    else
      sealed, state = '', 'lapsed'
    end
  end
else
  return {'missing'}
end
if refresh_due(s, now, refresh_after) then
  s.seen = num(now)
  put(s)
  settle(s, now)
end
return {'found', id, state, sealed, s.seen, flat}
