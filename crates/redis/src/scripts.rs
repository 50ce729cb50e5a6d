//! The Lua scripts that make each multi-step operation atomic on the server.
//!
//! A session is one string (layout in `crate::value`): a fixed-width text header (version,
//! idle and absolute deadlines, last-seen time, subject) and the encoded record. The scripts
//! read the header by its offsets and never decode the record; `touch` patches the header in
//! place. Every script checks liveness against the `now` its caller passes (the engine's
//! clock), not the server's: the server's own expiry (`PXAT` / `PEXPIREAT` at the earlier
//! deadline) is what frees memory. Versions are compared as their fixed-width digits;
//! deadlines as Lua numbers, exact below 2^53 ms (the store clamps every deadline to the year
//! 9999 before it gets here).

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

// Shared reading of a stored value (see `crate::value` for the layout): the header's fields
// by their fixed offsets (Lua strings count from 1).
//
// A create is no script at all: `SET name value NX PXAT deadline`.

/// KEYS[1] session. ARGV: now, expected version (20 digits), new value, expire at, indexed.
/// Returns 1 written, 0 version conflict, -1 gone or dead at `now`, -3 nothing written because
/// the record gains a subject it did not have (or changes it) and `indexed` is not `1` (the
/// caller adds the record to that subject's index first and calls again with `indexed` = `1`).
pub(crate) static UPDATE: Lua = Lua::new(
    r"
local cur = redis.call('GET', KEYS[1])
if not cur then return -1 end
local now = tonumber(ARGV[1])
if now >= tonumber(string.sub(cur, 21, 35)) or now >= tonumber(string.sub(cur, 36, 50)) then return -1 end
if string.sub(cur, 1, 20) ~= ARGV[2] then return 0 end
local new = ARGV[3]
if string.sub(new, 66, 66) == '1' and ARGV[5] ~= '1' then
  local function subject(v) return string.sub(v, 66, 71 + tonumber(string.sub(v, 67, 71))) end
  if subject(cur) ~= subject(new) then return -3 end
end
redis.call('SET', KEYS[1], new, 'PXAT', ARGV[4])
return 1
",
);

/// KEYS[1] session. ARGV: now, wanted idle deadline as 15 digits, now as 15 digits. Returns 1 touched, 0
/// gone or dead. Never revives; never moves the idle deadline past the absolute one. Rewrites
/// the header's idle deadline, absolute deadline (unchanged) and last-seen time in one
/// `SETRANGE`.
pub(crate) static TOUCH: Lua = Lua::new(
    r"
local h = redis.call('GETRANGE', KEYS[1], 0, 64)
if string.len(h) < 65 then return 0 end
local now = tonumber(ARGV[1])
local absolute = string.sub(h, 36, 50)
if now >= tonumber(string.sub(h, 21, 35)) or now >= tonumber(absolute) then return 0 end
local idle = ARGV[2]
if tonumber(idle) > tonumber(absolute) then idle = absolute end
redis.call('SETRANGE', KEYS[1], 20, idle .. absolute .. ARGV[3])
-- PEXPIREAT takes no leading zeros (and Lua would print a big number in exponent form).
redis.call('PEXPIREAT', KEYS[1], string.match(idle, '^0*(%d+)$'))
return 1
",
);

/// KEYS[1] old session, KEYS[2] new session (same slot). ARGV: now, expected version, new
/// value, its expiry. Returns 1 rotated, 0 version conflict, -1 old gone or dead, -2 new key
/// exists.
pub(crate) static ROTATE: Lua = Lua::new(
    r"
local h = redis.call('GETRANGE', KEYS[1], 0, 64)
if string.len(h) < 65 then return -1 end
local now = tonumber(ARGV[1])
if now >= tonumber(string.sub(h, 21, 35)) or now >= tonumber(string.sub(h, 36, 50)) then return -1 end
if string.sub(h, 1, 20) ~= ARGV[2] then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return -2 end
redis.call('SET', KEYS[2], ARGV[3], 'PXAT', ARGV[4])
redis.call('DEL', KEYS[1])
return 1
",
);

/// KEYS[1] session. ARGV: now, expected version. Deletes the record if it is live at `now` and
/// at the expected version. Returns 1 deleted, 0 version conflict, -1 gone or dead.
pub(crate) static DELETE_IF_VERSION: Lua = Lua::new(
    r"
local h = redis.call('GETRANGE', KEYS[1], 0, 64)
if string.len(h) < 65 then return -1 end
local now = tonumber(ARGV[1])
if now >= tonumber(string.sub(h, 21, 35)) or now >= tonumber(string.sub(h, 36, 50)) then return -1 end
if string.sub(h, 1, 20) ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
return 1
",
);

/// KEYS[1] session. ARGV: subject, now. Deletes the record if it belongs to `subject`.
/// Returns 1 deleted a live record, 0 deleted a dead one, -1 not there or someone else's.
pub(crate) static DELETE_IF_SUBJECT: Lua = Lua::new(
    r"
local cur = redis.call('GET', KEYS[1])
if not cur or string.len(cur) < 71 or string.sub(cur, 66, 66) ~= '1' then return -1 end
if string.sub(cur, 72, 71 + tonumber(string.sub(cur, 67, 71))) ~= ARGV[1] then return -1 end
redis.call('DEL', KEYS[1])
local now = tonumber(ARGV[2])
if now < tonumber(string.sub(cur, 21, 35)) and now < tonumber(string.sub(cur, 36, 50)) then return 1 end
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
