-- Shared by every sessionkit script (prepended to each).
--
-- Key layout, all under one base `<prefix>{<tag>}:` so a session's keys
-- share a Redis Cluster hash slot:
--   s:<id>      hash: `m` the packed metadata (see PACKED) and data fields
--               named `d:<key>`
--   t:<digest>  string: the session id a token digest points at
--   r:<id>      string: the current token sealed under the previous one,
--               until it is adopted or the previous token's grace ends
--               (its TTL), so a dump plus an old token yields nothing live
--   c:<id>      hash: connection id -> `<lease until>|<connection json>`
--   u:<user>    sorted set: the user's session ids, scored by expiry
-- A logged-in session's tag is its user's tag, so its user index shares
-- the slot too.
--
-- ARGV[1] is the base, ARGV[2] the channel session-ended events go to.
-- Times are milliseconds since the epoch, given by the caller.
--
-- The prelude and the scripts are loaded once as a Redis Functions library
-- (`FUNCTION LOAD`, called with `FCALL`), so that none of this is run again
-- per call; on servers without Functions, each script runs with `EVALSHA`
-- as the prelude followed by the script. Either way `begin` hands the call's
-- keys and arguments to the prelude first.
--
-- The token rules are those of `src/store/tokens.rs`, ported: the current
-- token works until the session's deadlines, adopted or not; the previous
-- one works until `grace`, and its requests get the sealed replacement
-- again until `resend`, a fresh one after, nothing once it is adopted.

local KEYS, ARGV, BASE, CHANNEL

local function begin(keys, args)
  KEYS, ARGV, BASE, CHANNEL = keys, args, args[1], args[2]
end

-- A session's metadata, packed into the one field `m`: first the numbers
-- and digests (never a comma) in the order of PACKED, empty for none; then
-- the byte lengths of the texts the caller chose, in the order of TEXTS,
-- empty for none; then those texts, back to back:
--   <created>,...,<grace>,<len uid>,<len user>,<len label>,<len device>,<texts>
-- A read then moves a field or two between Redis, Lua and the client
-- instead of one per item, which was most of a read's cost on the server
-- and in the client's reply parser. `src/store/redis/reply.rs` reads the
-- same layout.
local PACKED = {'created', 'seen', 'idle', 'abs', 'ttg', 'rot', 'renew', 'cur', 'adopted',
                'resend', 'prev', 'grace'}
local TEXTS = {'uid', 'user', 'label', 'device'}
-- A capture per part and per length (16), then the texts' position.
-- Spelled out: a library's top level cannot call `string`.
local UNPACK = '^([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),'
  .. '([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),()'
-- unpack() is limited by the Lua stack: long argument lists go in chunks.
local CHUNK = 500
-- The longest TTL set (2^48 ms, about 8,900 years).
local MAX_TTL = 2 ^ 48

local function num(x)
  return string.format('%.0f', x)
end

local function many(cmd, key, list)
  for i = 1, #list, CHUNK do
    redis.call(cmd, key, unpack(list, i, math.min(i + CHUNK - 1, #list)))
  end
end

local function skey(s) return s.base .. 's:' .. s.id end
local function rkey(s) return s.base .. 'r:' .. s.id end

-- Reads the packed metadata `m` into `s`. False for the metadata of the
-- layout before the texts joined `m` (its twelve parts alone): such
-- sessions are not read, and go at their TTL.
local function unpack_meta(s, m)
  local p = {string.match(m, UNPACK)}
  if #p ~= #PACKED + #TEXTS + 1 then
    if select(2, string.gsub(m, ',', '')) == #PACKED - 1 then return false end
    error('sessionkit: unreadable session metadata')
  end
  for i, f in ipairs(PACKED) do
    if p[i] ~= '' then s[f] = p[i] end
  end
  local at = p[#p]
  for i, f in ipairs(TEXTS) do
    local len = p[#PACKED + i]
    if len ~= '' then
      if not string.match(len, '^%d+$') then error('sessionkit: unreadable session metadata') end
      local n = tonumber(len)
      s[f] = string.sub(m, at, at + n - 1)
      at = at + n
    end
  end
  if at ~= #m + 1 then error('sessionkit: unreadable session metadata') end
  return true
end

-- The packed metadata of `s`.
local function pack_meta(s)
  local out, texts = {}, {}
  for i, f in ipairs(PACKED) do out[i] = s[f] or '' end
  for _, f in ipairs(TEXTS) do
    local v = s[f]
    if v then
      out[#out + 1] = tostring(#v)
      texts[#texts + 1] = v
    else
      out[#out + 1] = ''
    end
  end
  return table.concat(out, ',') .. ',' .. table.concat(texts)
end

-- Writes the packed metadata of `s` back, after a change to it.
local function put(s)
  redis.call('HSET', skey(s), 'm', pack_meta(s))
end

-- A session's metadata, or nil if it does not exist.
local function meta(base, id)
  local m = redis.call('HGET', base .. 's:' .. id, 'm')
  if not m then return nil end
  local s = {base = base, id = id}
  if not unpack_meta(s, m) then return nil end
  return s
end

-- A session's metadata and its whole hash (flat field/value list).
local function whole(base, id)
  local flat = redis.call('HGETALL', base .. 's:' .. id)
  if #flat == 0 then return nil, flat end
  local s = {base = base, id = id}
  for i = 1, #flat, 2 do
    if flat[i] == 'm' then
      if not unpack_meta(s, flat[i + 1]) then return nil, {} end
      break
    end
  end
  -- A hash without metadata is no session (the leftover of a data write
  -- into a session that had just ended, or a layout before `m`): it goes
  -- at its TTL.
  if not s.cur then return nil, {} end
  return s, flat
end

-- The data part of a flat hash, as a key -> value table.
local function data_of(flat)
  local data = {}
  for i = 1, #flat, 2 do
    if string.sub(flat[i], 1, 2) == 'd:' then data[string.sub(flat[i], 3)] = flat[i + 1] end
  end
  return data
end

local function deadline(s)
  local d = tonumber(s.seen) + tonumber(s.idle)
  if s.abs then d = math.min(d, tonumber(s.abs)) end
  return d
end

-- A session is live until its deadlines, whatever its tokens.
local function expires_at(s)
  return deadline(s)
end

local function live(s, now)
  return now < expires_at(s)
end

-- Whether a use at `now` slides the idle deadline: once the last refresh
-- is `after` old, or a tenth of the session's own idle timeout if shorter
-- (SessionRecord::refresh_due). `after` nil: a silent read.
local function refresh_due(s, now, after)
  if not after then return false end
  return now - tonumber(s.seen) >= math.min(after, math.floor(tonumber(s.idle) / 10))
end

local function publish(id, reason)
  redis.call('PUBLISH', CHANNEL, cjson.encode({id = id, reason = reason}))
end

-- Removes a session and everything that points at it, and tells subscribers.
local function kill(s, reason)
  local b = s.base
  local keys = {b .. 's:' .. s.id, b .. 'c:' .. s.id, b .. 'r:' .. s.id}
  if s.cur then keys[#keys + 1] = b .. 't:' .. s.cur end
  if s.prev then keys[#keys + 1] = b .. 't:' .. s.prev end
  redis.call('DEL', unpack(keys))
  if s.uid then redis.call('ZREM', b .. 'u:' .. s.uid, s.id) end
  publish(s.id, reason)
end

-- Gives every key of the session the TTL of its expiry, and moves its
-- entry in the user's index to that expiry. Called after every change that
-- can move the expiry, so index scores are always exact.
local function settle(s, now)
  local at = expires_at(s)
  -- Capped, so that no deadline a caller passes can make PEXPIRE fail
  -- halfway through a script.
  local ttl = num(math.min(math.max(at - now, 1), MAX_TTL))
  local b = s.base
  redis.call('PEXPIRE', skey(s), ttl)
  redis.call('PEXPIRE', b .. 't:' .. s.cur, ttl)
  if s.prev then redis.call('PEXPIRE', b .. 't:' .. s.prev, ttl) end
  redis.call('PEXPIRE', b .. 'c:' .. s.id, ttl)
  if s.uid then
    local u = b .. 'u:' .. s.uid
    redis.call('ZADD', u, num(at), s.id)
    -- Scores are exact expiries, so entries scored in the past belong to
    -- sessions whose keys expired on their own: drop them, so that a user
    -- who is never listed cannot pile up dead entries.
    redis.call('ZREMRANGEBYSCORE', u, '-inf', num(now))
    -- The index lives as long as its longest session.
    if redis.call('PTTL', u) < tonumber(ttl) then redis.call('PEXPIRE', u, ttl) end
  end
end

-- The live session `id` read with `read` (meta or whole), or nil; a dead
-- one found on the way is removed as expired.
local function alive(base, id, now, read)
  local s, flat = read(base, id)
  if s and not live(s, now) then
    kill(s, 'expired')
    return nil, flat
  end
  return s, flat
end

-- A session to create, from ARGV[3..11]: id, token digest, now, idle,
-- absolute deadline or '', `=user id` or '', user json, `=label` or '',
-- `=device json` or '' (`ops::push_new_session`).
local function new_session()
  local s = {base = BASE, id = ARGV[3], cur = ARGV[4], created = ARGV[5], seen = ARGV[5],
             ttg = ARGV[5], idle = ARGV[6], adopted = '1'}
  if ARGV[7] ~= '' then s.abs = ARGV[7] end
  if ARGV[8] ~= '' then
    s.uid = string.sub(ARGV[8], 2)
    s.user = ARGV[9]
  end
  if ARGV[10] ~= '' then s.label = string.sub(ARGV[10], 2) end
  if ARGV[11] ~= '' then s.device = string.sub(ARGV[11], 2) end
  return s
end

-- Key/value pairs from ARGV, starting at i with their number. Returns them
-- as a table and the index after them.
local function read_pairs(i)
  local data = {}
  local n = tonumber(ARGV[i])
  for j = 1, n do
    data[ARGV[i + 2 * j - 1]] = ARGV[i + 2 * j]
  end
  return data, i + 1 + 2 * n
end

-- Writes a new session (metadata, data, first token) and settles it.
local function store(s, data, now)
  local fields = {'m', pack_meta(s)}
  for k, v in pairs(data) do
    fields[#fields + 1] = 'd:' .. k
    fields[#fields + 1] = v
  end
  many('HSET', skey(s), fields)
  redis.call('SET', s.base .. 't:' .. s.cur, s.id)
  settle(s, now)
end

-- The live sessions among `ids` of a user's index; dead entries are pruned
-- on the way.
local function live_of(base, uid, ids, now)
  local u = base .. 'u:' .. uid
  local out = {}
  for _, id in ipairs(ids) do
    local s = alive(base, id, now, meta)
    if s then
      out[#out + 1] = s
    else
      redis.call('ZREM', u, id)
    end
  end
  return out
end

-- Every live session in a user's index (for a login enforcing the limit,
-- which the limit itself keeps small).
local function user_sessions(base, uid, now)
  return live_of(base, uid, redis.call('ZRANGE', base .. 'u:' .. uid, 0, -1), now)
end

-- One chunk of a user's index, for operations that page through it so that
-- no script runs long however many sessions a user has: the live sessions
-- among the entries ZSCAN gives from `cursor`, and the next cursor ('0' at
-- the end). Small chunks: each entry costs a read of its session, and a
-- script blocks every other client of the server while it runs.
local function user_chunk(base, uid, cursor, now)
  local r = redis.call('ZSCAN', base .. 'u:' .. uid, cursor, 'COUNT', 32)
  local ids = {}
  for i = 1, #r[2], 2 do ids[#ids + 1] = r[2][i] end
  return live_of(base, uid, ids, now), r[1]
end

-- A delta from ARGV, starting at i: clear, idle, label (`=label` or empty),
-- the number of removed keys and the keys, the number of set keys and the
-- key/value pairs. Returns the delta and the index after it.
local function read_delta(i)
  local d = {clear = ARGV[i] == '1', idle = ARGV[i + 1], label = ARGV[i + 2], rem = {}, set = {}}
  i = i + 3
  local n = tonumber(ARGV[i])
  i = i + 1
  for j = 1, n do
    d.rem[j] = ARGV[i]
    i = i + 1
  end
  n = tonumber(ARGV[i])
  i = i + 1
  for j = 1, n do
    d.set[j] = {ARGV[i], ARGV[i + 1]}
    i = i + 2
  end
  return d, i
end

-- Applies a delta's data part to a key -> value table.
local function apply_to(data, d)
  if d.clear then
    for k in pairs(data) do data[k] = nil end
  end
  for _, k in ipairs(d.rem) do data[k] = nil end
  for _, kv in ipairs(d.set) do data[kv[1]] = kv[2] end
end

-- Applies a delta to a stored session.
local function apply(s, d)
  local k = skey(s)
  local del = {}
  if d.clear then
    for _, f in ipairs(redis.call('HKEYS', k)) do
      if string.sub(f, 1, 2) == 'd:' then del[#del + 1] = f end
    end
  end
  for _, key in ipairs(d.rem) do del[#del + 1] = 'd:' .. key end
  many('HDEL', k, del)
  local set = {}
  for _, kv in ipairs(d.set) do
    set[#set + 1] = 'd:' .. kv[1]
    set[#set + 1] = kv[2]
  end
  if d.idle ~= '' then s.idle = d.idle end
  if d.label ~= '' then s.label = string.sub(d.label, 2) end
  if d.idle ~= '' or d.label ~= '' then
    set[#set + 1] = 'm'
    set[#set + 1] = pack_meta(s)
  end
  many('HSET', k, set)
end

-- A flat list of a data table, for replies.
local function flatten(data)
  local out = {}
  for k, v in pairs(data) do
    out[#out + 1] = k
    out[#out + 1] = v
  end
  return out
end
