-- Creates a session.
-- KEYS[1] session key. ARGV[3] id, [4] token digest, [5] now, [6] idle,
-- [7] absolute deadline or '', [8] user id or '', [9] user json,
-- [10] `=label` or '', [11] number of data pairs, then the pairs.
local now = tonumber(ARGV[5])
local s = {base = BASE, id = ARGV[3], cur = ARGV[4], created = ARGV[5], seen = ARGV[5],
           ttg = ARGV[5], idle = ARGV[6], adopted = '1'}
if ARGV[7] ~= '' then s.abs = ARGV[7] end
if ARGV[8] ~= '' then
  s.uid = ARGV[8]
  s.user = ARGV[9]
end
if ARGV[10] ~= '' then s.label = string.sub(ARGV[10], 2) end
local data = {}
local n = tonumber(ARGV[11])
for i = 0, n - 1 do
  data[ARGV[12 + 2 * i]] = ARGV[13 + 2 * i]
end
store(s, data, now)
return 1
