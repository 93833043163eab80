"""The version-guarded upsert script and its SHA1, for EVALSHA with a NOSCRIPT fallback.

The script is the only code that writes tier hashes and tier counts, so the guard (an older or equal
version never overwrites a newer one) and the counts stay consistent under replays, restarted workers
and two workers writing the same customer during a rebalance. It lives here as a string, not a ``.lua``
file, so that it ships with the package without package-data configuration.
"""

from __future__ import annotations

import hashlib

#: Source of the upsert script (Redis Lua, runs atomically): the records of many customers in one call, all
#: of a customer's records (one per policy) together. One call per customer cost the worker ~20 µs of client
#: CPU per customer in redis-py's command packing and reply parsing (one policy; 10,000 customers written
#: with ``ReadModelWriter.write``): a third of the worker's time with one call per *record* and eleven
#: presets (bench/bench_throughput.py), and still ~10 % with one call per customer.
UPSERT_LUA: str = """\
-- Version-guarded upsert of customers' records (one per policy) of the tierstream read model.
-- KEYS[1] = {p}meta; then per customer: {p}tier:{customer}, then {p}counts:{policy} of each of its records
-- ARGV[1] = now (epoch seconds, the writer's clock); then per customer: its record count n, then n times
--   policy (hash field), version, tier, record JSON
-- Returns the number of records stored (not those refused because Redis already held the same or a newer
-- version): one integer, whose reply costs the client less to read than one per record.
local stored = 0
local k, a = 2, 2
while a <= #ARGV do
  local tier_key = KEYS[k]
  local n = tonumber(ARGV[a])
  k, a = k + 1, a + 1
  for i = 1, n do
    local policy, new_version, new_tier, value = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2], ARGV[a + 3]
    local counts = KEYS[k]
    k, a = k + 1, a + 4
    local old_tier = false
    local stale = false
    local current = redis.call('HGET', tier_key, policy)
    if current then
      -- A stored value that does not decode is treated as absent: the new record repairs it.
      local ok, stored = pcall(cjson.decode, current)
      if ok and type(stored) == 'table' then
        local stored_version = tonumber(stored['version'])
        -- Equal version = replay of the same fact; smaller = out of order. Neither may go back in time.
        if stored_version and stored_version >= new_version then stale = true end
        if type(stored['tier']) == 'string' then old_tier = stored['tier'] end
      end
    end
    if not stale then
      redis.call('HSET', tier_key, policy, value)
      if old_tier ~= new_tier then
        if old_tier then
          if redis.call('HINCRBY', counts, old_tier, -1) <= 0 then redis.call('HDEL', counts, old_tier) end
        end
        redis.call('HINCRBY', counts, new_tier, 1)
      end
      stored = stored + 1
    end
  end
end
-- The writer is alive even when every record was a replay: staleness tracking moves on.
local last = tonumber(redis.call('HGET', KEYS[1], 'last_write_at') or '0')
if tonumber(ARGV[1]) > last then redis.call('HSET', KEYS[1], 'last_write_at', ARGV[1]) end
return stored
"""
#: SHA1 Redis uses to name the script in its script cache.
UPSERT_SHA: str = hashlib.sha1(UPSERT_LUA.encode("utf-8")).hexdigest()

#: Source of the ledger script: the new ledger entries of many customers, under all their policies, in one
#: call (ZADD, trim to the newest ``keep`` per policy, index the policies), for the same reason as the upsert:
#: one call per customer cost the worker ~15-19 µs of client CPU per entry (bench/bench_redis_write.py,
#: session 21), and a backlog batch of many customers brings thousands of tier changes.
LEDGER_LUA: str = """\
-- KEYS, per customer: {p}ledgers:{customer}, then {p}ledger:{customer}:{policy} of each of its policies
-- ARGV[1] = entries kept per policy; then per customer: its policy count k, then k times: policy id,
--   entry count m, and m pairs (score, member)
-- Returns the number of entries added (already present ones are not counted: ZADD is idempotent).
local keep = tonumber(ARGV[1])
local added = 0
local k, pos = 1, 2
while pos <= #ARGV do
  local index = KEYS[k]
  local policies = tonumber(ARGV[pos])
  k, pos = k + 1, pos + 1
  for i = 1, policies do
    local key = KEYS[k]
    local policy = ARGV[pos]
    local m = tonumber(ARGV[pos + 1])
    k, pos = k + 1, pos + 2
    for j = 1, m do
      added = added + redis.call('ZADD', key, ARGV[pos], ARGV[pos + 1])
      pos = pos + 2
    end
    -- Lowest scores go first: the oldest effective_at. Equal scores fall back to member order,
    -- which only matters for changes sharing one instant at the keep-th place.
    redis.call('ZREMRANGEBYRANK', key, 0, -(keep + 1))
    redis.call('SADD', index, policy)
  end
end
return added
"""
LEDGER_SHA: str = hashlib.sha1(LEDGER_LUA.encode("utf-8")).hexdigest()
