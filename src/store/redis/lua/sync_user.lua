-- Replaces the user object in every live session of the user.
-- KEYS[1] user index. ARGV[3] user id, [4] now, [5] user json.
-- Reply: how many sessions were updated.
local list = user_sessions(BASE, ARGV[3], tonumber(ARGV[4]))
for _, s in ipairs(list) do
  redis.call('HSET', skey(s), 'user', ARGV[5])
end
return #list
