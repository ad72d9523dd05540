-- Revokes sessions in a user's index: only those, so an id of another
-- user's session does nothing. Revoking all (but one) works in chunks of
-- 20, so no call runs long however many sessions the user has; the caller
-- repeats it while entries remain.
-- KEYS[1] user index. ARGV[3] user id, [4] now, [5] 'one'|'all'|'except', [6] id.
-- Reply: {ids revoked, entries left to look at}
-- Sent as `ops::RevokeSome`, read by `reply::revoked` (src/store/redis/): the
-- ARGV order above is the order of that struct's arguments.
local uid, now, mode, target = ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
local u = KEYS[1]
local out = {}
if mode == 'one' then
  if redis.call('ZSCORE', u, target) then
    for _, s in ipairs(live_of(BASE, uid, {target}, now)) do
      kill(s, 'revoked')
      out[#out + 1] = s.id
    end
  end
  return {out, 0}
end
local kept = 0
for _, s in ipairs(live_of(BASE, uid, redis.call('ZRANGE', u, 0, 19), now)) do
  if mode == 'except' and s.id == target then
    kept = 1
  else
    kill(s, 'revoked')
    out[#out + 1] = s.id
  end
end
if mode == 'except' and kept == 0 and redis.call('ZSCORE', u, target) then kept = 1 end
return {out, redis.call('ZCARD', u) - kept}
