-- Ends a live session (a dead one found on the way is removed as expired).
-- KEYS[1] session key. ARGV[3] id, [4] reason, [5] now.
-- Reply: 1 if it was live, else 0.
-- Sent as `ops::Destroy`, read by `reply::flag` (src/store/redis/): the
-- ARGV order above is the order of that struct's arguments.
local s = alive(BASE, ARGV[3], tonumber(ARGV[5]), meta)
if not s then return 0 end
kill(s, ARGV[4])
return 1
