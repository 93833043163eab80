"""The version-guarded upsert script and its SHA1, for EVALSHA with a NOSCRIPT fallback.

The script is the only code that writes tier hashes and tier counts, so the guard (an older or equal
version never overwrites a newer one) and the counts stay consistent under replays, restarted workers
and two workers writing the same customer during a rebalance. It lives here as a string, not a ``.lua``
file, so that it ships with the package without package-data configuration.
"""

from __future__ import annotations

import hashlib

#: Source of the upsert script (Redis Lua, runs atomically).
UPSERT_LUA: str = """\
-- Version-guarded upsert of one (customer, policy) record of the tierstream read model.
-- KEYS[1] = {p}tier:{customer}   KEYS[2] = {p}counts:{policy}   KEYS[3] = {p}meta
-- ARGV[1] = policy (hash field)  ARGV[2] = version  ARGV[3] = tier  ARGV[4] = record JSON
-- ARGV[5] = now (epoch seconds, the writer's clock)
-- Returns 1 if the record was stored, 0 if Redis already held the same or a newer version.
local new_version = tonumber(ARGV[2])
local old_tier = false
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  -- A stored value that does not decode is treated as absent: the new record repairs it.
  local ok, stored = pcall(cjson.decode, current)
  if ok and type(stored) == 'table' then
    local stored_version = tonumber(stored['version'])
    if stored_version and stored_version >= new_version then
      -- Equal version = replay of the same fact; smaller = out of order. Neither may go back in time.
      -- The writer is still alive, so staleness tracking moves on.
      local last = tonumber(redis.call('HGET', KEYS[3], 'last_write_at') or '0')
      if tonumber(ARGV[5]) > last then redis.call('HSET', KEYS[3], 'last_write_at', ARGV[5]) end
      return 0
    end
    if type(stored['tier']) == 'string' then old_tier = stored['tier'] end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
if old_tier ~= ARGV[3] then
  if old_tier then
    if redis.call('HINCRBY', KEYS[2], old_tier, -1) <= 0 then redis.call('HDEL', KEYS[2], old_tier) end
  end
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
end
local last = tonumber(redis.call('HGET', KEYS[3], 'last_write_at') or '0')
if tonumber(ARGV[5]) > last then redis.call('HSET', KEYS[3], 'last_write_at', ARGV[5]) end
return 1
"""
#: SHA1 Redis uses to name the script in its script cache.
UPSERT_SHA: str = hashlib.sha1(UPSERT_LUA.encode("utf-8")).hexdigest()
