-- One chunk of a user's live sessions. KEYS[1] user index. ARGV[3] user
-- id, [4] now, [5] cursor ('0' to start).
-- Reply: {next cursor ('0': done), rows}, a row per session: id, created,
-- seen, idle, absolute deadline or '', `=label` or '', device json or ''
-- Sent as `ops::List`, read by `reply::chunk + reply::session_infos` (src/store/redis/): the
-- ARGV order above is the order of that struct's arguments.
local list, cursor = user_chunk(BASE, ARGV[3], ARGV[5], tonumber(ARGV[4]))
local rows = {}
for _, s in ipairs(list) do
  local label = ''
  if s.label then label = '=' .. s.label end
  for _, v in ipairs({s.id, s.created, s.seen, s.idle, s.abs or '', label, s.device or ''}) do
    rows[#rows + 1] = v
  end
end
return {cursor, rows}
