-- Starts an authenticated session, carrying over the data of the session
-- the request had, records it in the user's index and enforces the
-- per-user limit. The data of a session of another user does not carry
-- over.
-- KEYS[1] new session key. ARGV[3..11] the session (see new_session),
-- [12] max sessions (0: no limit), [13] base of the old session or '',
-- [14] its id or '', [15] number of carried data pairs, the pairs, then the delta.
-- Reply: {evicted ids, data pairs}
-- Sent as `ops::Login`, read by `reply::login` (src/store/redis/): the
-- ARGV order above is the order of that struct's arguments.
local now = tonumber(ARGV[5])
local s = new_session()
local data, i = read_pairs(15)
if ARGV[14] ~= '' then
  local from, flat = alive(ARGV[13], ARGV[14], now, whole)
  if from then
    -- Data carries over from an anonymous session or one of the same user,
    -- never from another user's.
    if not from.uid or from.uid == s.uid then data = data_of(flat) end
    kill(from, 'replaced')
  end
end
local d = read_delta(i)
apply_to(data, d)
if d.idle ~= '' then s.idle = d.idle end
if d.label ~= '' then s.label = string.sub(d.label, 2) end
store(s, data, now)
local evicted = {}
local max = tonumber(ARGV[12])
if max > 0 then
  local others = {}
  for _, o in ipairs(user_sessions(BASE, s.uid, now)) do
    if o.id ~= s.id then others[#others + 1] = o end
  end
  table.sort(others, function(a, b)
    local ca, cb = tonumber(a.created), tonumber(b.created)
    if ca ~= cb then return ca < cb end
    return a.id < b.id
  end)
  for n = 1, #others + 1 - max do
    kill(others[n], 'revoked')
    evicted[#evicted + 1] = others[n].id
  end
end
return {evicted, flatten(data)}
