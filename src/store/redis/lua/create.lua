-- Creates a session.
-- KEYS[1] session key. ARGV[3..10] the session (see new_session), [11] the
-- number of data pairs, then the pairs.
store(new_session(), read_pairs(11), tonumber(ARGV[5]))
return 1
