//! The Lua scripts that make each multi-step operation atomic on the server.
//!
//! A session is a hash with these fields:
//!
//! | field | holds |
//! |---|---|
//! | `b` | the whole record, [`Record::encode`](tessera_core::Record::encode) |
//! | `v` | the version (decimal), overrides the blob's |
//! | `i` | the idle deadline (Unix ms), overrides the blob's |
//! | `l` | the last-seen time (Unix ms), overrides the blob's |
//! | `a` | the absolute deadline (Unix ms), for the scripts' liveness checks |
//! | `s` | the subject, when there is one, for `delete_subject`'s ownership check |
//!
//! `touch` rewrites only `i` and `l`, so the blob need not be decoded on the server. Every
//! script checks liveness against the `now` its caller passes (the engine's clock), not the
//! server's: the server's own expiry (`PEXPIREAT` at the earlier deadline) is what frees memory.
//! Versions are compared as the exact decimal strings; deadlines as Lua numbers, exact below
//! 2^53 ms (the store clamps every deadline to the year 9999 before it gets here).

use std::sync::OnceLock;

/// A Lua script: its source, and its SHA-1 (what `EVALSHA` names it by), computed once.
pub(crate) struct Lua {
    source: &'static str,
    hash: OnceLock<String>,
}

impl Lua {
    const fn new(source: &'static str) -> Self {
        Self {
            source,
            hash: OnceLock::new(),
        }
    }

    pub(crate) fn source(&self) -> &'static str {
        self.source
    }

    /// The script's SHA-1 in hex, as `SCRIPT LOAD` would return it.
    pub(crate) fn hash(&self) -> &str {
        self.hash
            .get_or_init(|| redis::Script::new(self.source).get_hash().to_owned())
    }
}

/// KEYS[1] session. ARGV: blob, version, idle, absolute, last_seen, expire_at, has_subject,
/// subject. Returns 1 created, 0 the key exists.
pub(crate) static CREATE: Lua = Lua::new(
    r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'b', ARGV[1], 'v', ARGV[2], 'i', ARGV[3], 'a', ARGV[4], 'l', ARGV[5])
if ARGV[7] == '1' then redis.call('HSET', KEYS[1], 's', ARGV[8]) end
redis.call('PEXPIREAT', KEYS[1], ARGV[6])
return 1
",
);

/// KEYS[1] session. ARGV: now, expected version, the eight CREATE arguments, indexed.
/// Returns 1 written, 0 version conflict, -1 gone or dead at `now`, -3 nothing written because
/// the record gains a subject it did not have and `indexed` is not `1` (the caller adds the
/// record to that subject's index first and calls again with `indexed` = `1`).
pub(crate) static UPDATE: Lua = Lua::new(
    r"
local cur = redis.call('HMGET', KEYS[1], 'v', 'i', 'a', 's')
if not cur[1] then return -1 end
local now = tonumber(ARGV[1])
if now >= tonumber(cur[2]) or now >= tonumber(cur[3]) then return -1 end
if cur[1] ~= ARGV[2] then return 0 end
if ARGV[9] == '1' and ARGV[11] ~= '1' and cur[4] ~= ARGV[10] then return -3 end
redis.call('HSET', KEYS[1], 'b', ARGV[3], 'v', ARGV[4], 'i', ARGV[5], 'a', ARGV[6], 'l', ARGV[7])
if ARGV[9] == '1' then
  redis.call('HSET', KEYS[1], 's', ARGV[10])
else
  redis.call('HDEL', KEYS[1], 's')
end
redis.call('PEXPIREAT', KEYS[1], ARGV[8])
return 1
",
);

/// KEYS[1] session. ARGV: now, wanted idle deadline. Returns 1 touched, 0 gone or dead.
/// Never revives; never moves the idle deadline past the absolute one.
pub(crate) static TOUCH: Lua = Lua::new(
    r"
local cur = redis.call('HMGET', KEYS[1], 'i', 'a')
if not cur[1] then return 0 end
local now = tonumber(ARGV[1])
local absolute = tonumber(cur[2])
if now >= tonumber(cur[1]) or now >= absolute then return 0 end
local idle = ARGV[2]
if tonumber(idle) > absolute then idle = cur[2] end
redis.call('HSET', KEYS[1], 'i', idle, 'l', ARGV[1])
redis.call('PEXPIREAT', KEYS[1], idle)
return 1
",
);

/// KEYS[1] old session, KEYS[2] new session (same slot). ARGV: now, expected version, then the
/// eight CREATE arguments for the new record. Returns 1 rotated, 0 version conflict, -1 old
/// gone or dead, -2 new key exists.
pub(crate) static ROTATE: Lua = Lua::new(
    r"
local cur = redis.call('HMGET', KEYS[1], 'v', 'i', 'a')
if not cur[1] then return -1 end
local now = tonumber(ARGV[1])
if now >= tonumber(cur[2]) or now >= tonumber(cur[3]) then return -1 end
if cur[1] ~= ARGV[2] then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return -2 end
redis.call('HSET', KEYS[2], 'b', ARGV[3], 'v', ARGV[4], 'i', ARGV[5], 'a', ARGV[6], 'l', ARGV[7])
if ARGV[9] == '1' then redis.call('HSET', KEYS[2], 's', ARGV[10]) end
redis.call('PEXPIREAT', KEYS[2], ARGV[8])
redis.call('DEL', KEYS[1])
return 1
",
);

/// KEYS[1] session. ARGV: now, expected version. Deletes the record if it is live at `now` and
/// at the expected version. Returns 1 deleted, 0 version conflict, -1 gone or dead.
pub(crate) static DELETE_IF_VERSION: Lua = Lua::new(
    r"
local cur = redis.call('HMGET', KEYS[1], 'v', 'i', 'a')
if not cur[1] then return -1 end
local now = tonumber(ARGV[1])
if now >= tonumber(cur[2]) or now >= tonumber(cur[3]) then return -1 end
if cur[1] ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
return 1
",
);

/// KEYS[1] session. ARGV: subject, now. Deletes the record if it belongs to `subject`.
/// Returns 1 deleted a live record, 0 deleted a dead one, -1 not there or someone else's.
pub(crate) static DELETE_IF_SUBJECT: Lua = Lua::new(
    r"
local cur = redis.call('HMGET', KEYS[1], 's', 'i', 'a')
if not cur[1] or cur[1] ~= ARGV[1] then return -1 end
redis.call('DEL', KEYS[1])
local now = tonumber(ARGV[2])
if now < tonumber(cur[2]) and now < tonumber(cur[3]) then return 1 end
return 0
",
);

/// KEYS[1] subject index. ARGV: member (the record's raw key), the member's absolute deadline.
/// Adds the member scored with the server's time (ms) and keeps the index alive at least as
/// long as the member can live.
pub(crate) static INDEX_ADD: Lua = Lua::new(
    r"
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], ms, ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 or ms + ttl < tonumber(ARGV[2]) then
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
end
return 1
",
);

/// KEYS[1] subject index. ARGV: grace (ms), then candidate members. Removes the candidates
/// that were added more than `grace` ago by the server's clock; younger ones may belong to a
/// create, update or rotation still on its way (the index is written first), so they stay.
/// Returns how many it removed.
pub(crate) static INDEX_PRUNE: Lua = Lua::new(
    r"
local t = redis.call('TIME')
local cutoff = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[1])
local removed = 0
for k = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[k])
  if score and tonumber(score) <= cutoff then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[k])
  end
end
return removed
",
);
