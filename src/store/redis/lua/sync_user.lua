-- Replaces the user object in one chunk of the user's live sessions, and
-- marks them to get a new token on their next use (a privilege change).
-- KEYS[1] user index. ARGV[3] user id, [4] now, [5] user json, [6] cursor.
-- Reply: {next cursor ('0': done), how many sessions were updated}
-- Sent as `ops::SyncUser`, read by `reply::chunk + reply::count` (src/store/redis/): the
-- ARGV order above is the order of that struct's arguments.
local list, cursor = user_chunk(BASE, ARGV[3], ARGV[6], tonumber(ARGV[4]))
for _, s in ipairs(list) do
  s.renew, s.user = '1', ARGV[5]
  put(s)
end
return {cursor, #list}
