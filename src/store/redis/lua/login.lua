-- Starts an authenticated session, carrying over the data of the session
-- the request had, records it in the user's index and enforces the
-- per-user limit.
-- KEYS[1] new session key. ARGV[3] id, [4] token digest, [5] now, [6] idle,
-- [7] absolute deadline or '', [8] user id, [9] user json, [10] `=label` or '',
-- [11] max sessions (0: no limit), [12] base of the old session or '',
-- [13] its id or '', [14] number of carried data pairs, the pairs, then the delta.
-- Reply: {evicted ids, data pairs}
local now = tonumber(ARGV[5])
local uid = ARGV[8]
local data = {}
local n = tonumber(ARGV[14])
for i = 0, n - 1 do
  data[ARGV[15 + 2 * i]] = ARGV[16 + 2 * i]
end
if ARGV[13] ~= '' then
  local from, flat = whole(ARGV[12], ARGV[13])
  if from and live(from, now) then
    data = data_of(flat)
    kill(from, 'replaced')
  elseif from then
    kill(from, 'expired')
  end
end
local d = read_delta(15 + 2 * n)
apply_to(data, d)
local s = {base = BASE, id = ARGV[3], cur = ARGV[4], created = ARGV[5], seen = ARGV[5],
           ttg = ARGV[5], idle = ARGV[6], adopted = '1', uid = uid, user = ARGV[9]}
if ARGV[7] ~= '' then s.abs = ARGV[7] end
if ARGV[10] ~= '' then s.label = string.sub(ARGV[10], 2) end
if d.idle ~= '' then s.idle = d.idle end
if d.label ~= '' then s.label = string.sub(d.label, 2) end
store(s, data, now)
local evicted = {}
local max = tonumber(ARGV[11])
if max > 0 then
  local others = {}
  for _, o in ipairs(user_sessions(BASE, uid, now)) do
    if o.id ~= s.id then others[#others + 1] = o end
  end
  table.sort(others, function(a, b)
    local ca, cb = tonumber(a.created), tonumber(b.created)
    if ca ~= cb then return ca < cb end
    return a.id < b.id
  end)
  for i = 1, #others + 1 - max do
    kill(others[i], 'revoked')
    evicted[#evicted + 1] = others[i].id
  end
end
return {evicted, flatten(data)}
