-- A user's live sessions. KEYS[1] user index. ARGV[3] user id, [4] now.
-- Reply: per session: id, created, seen, idle, absolute deadline or '',
-- `=label` or ''
local out = {}
for _, s in ipairs(user_sessions(BASE, ARGV[3], tonumber(ARGV[4]))) do
  local label = ''
  if s.label then label = '=' .. s.label end
  for _, v in ipairs({s.id, s.created, s.seen, s.idle, s.abs or '', label}) do
    out[#out + 1] = v
  end
end
return out
