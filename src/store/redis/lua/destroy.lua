-- Ends a session. With `take`, returns its data if it was live (the first
-- half of a login that moves a session to another cluster slot).
-- KEYS[1] session key. ARGV[3] id, [4] reason, [5] take ('1'/'0'), [6] now.
-- Reply: {existed (0/1), data pairs}
local s, flat = whole(BASE, ARGV[3])
if not s then return {0, {}} end
local reason, data = ARGV[4], {}
if ARGV[5] == '1' then
  if live(s, tonumber(ARGV[6])) then
    data = flatten(data_of(flat))
  else
    reason = 'expired'
  end
end
kill(s, reason)
return {1, data}
