-- Revokes sessions in a user's index: only those, so an id of another
-- user's session does nothing.
-- KEYS[1] user index. ARGV[3] user id, [4] now, [5] 'one'|'all'|'except', [6] id.
-- Reply: the ids revoked.
local mode, target = ARGV[5], ARGV[6]
local out = {}
for _, s in ipairs(user_sessions(BASE, ARGV[3], tonumber(ARGV[4]))) do
  local hit = mode == 'all' or (mode == 'one' and s.id == target)
      or (mode == 'except' and s.id ~= target)
  if hit then
    kill(s, 'revoked')
    out[#out + 1] = s.id
  end
end
return out
