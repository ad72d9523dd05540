-- Ends a live session (a dead one found on the way is removed as expired).
-- With `take`, returns its data (the first half of a login that moves a
-- session to another cluster slot).
-- KEYS[1] session key. ARGV[3] id, [4] reason, [5] take ('1'/'0'), [6] now.
-- Reply: {existed (0/1), data pairs}
local s, flat = alive(BASE, ARGV[3], tonumber(ARGV[6]), whole)
if not s then return {0, {}} end
local data = {}
if ARGV[5] == '1' then data = flatten(data_of(flat)) end
kill(s, ARGV[4])
return {1, data}
