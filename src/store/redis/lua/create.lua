-- Creates a session.
-- KEYS[1] session key. ARGV[3..11] the session (see new_session), [12] the
-- number of data pairs, then the pairs.
-- Reply: 1.
-- Sent as `ops::Create`, read by `reply::flag` (src/store/redis/): the
-- ARGV order above is the order of that struct's arguments.
store(new_session(), read_pairs(12), tonumber(ARGV[5]))
return 1
