//! State that all replicas of keel share, in one Redis: the budget ledgers
//! of [`crate::ledger`], the GCRA rate limits of [`crate::rate`], the
//! bytes of the response cache, and which circuit breakers are open. Each replica keeps a [`Shared`] handle; the
//! semantics are those of the in-process versions, only atomic across
//! processes.
//!
//! # Key layout
//!
//! Every key starts with the configured prefix `P` (scope and limit names
//! may hold any character; the kind comes first, so keys of different kinds
//! never collide):
//!
//! | key             | type   | content                                        | expires                            |
//! |-----------------|--------|------------------------------------------------|------------------------------------|
//! | `P:spend:SCOPE` | hash   | bucket → spend, micro-dollars (`HINCRBY`)      | `keep` after the scope's last settle |
//! | `P:holds:SCOPE` | hash   | hold id → `"AMOUNT EXPIRES"` (µs, Redis clock) | with the scope's longest-lived hold |
//! | `P:gcra:NAME`   | string | theoretical arrival time (µs, Redis clock)     | when the limit has a full burst again |
//! | `P:cache:HEX`   | string | a response's bytes; HEX: the 32-byte key       | with the entry (its ttl)           |
//! | `P:breaker:NAME`| string | `1`: some replica's breaker for NAME is open   | when that breaker half-opens       |
//! | `P:settled:HOLD`| string | `1`: this hold was settled (retries book nothing) | an hour                         |
//!
//! So ledgers nobody spends on, limits nobody uses and old cache entries
//! vanish by themselves.
//!
//! # Atomicity and clocks
//!
//! Each ledger or rate-limit operation is one Lua script (`EVALSHA`, loaded
//! again after a server restart), and Redis runs scripts one at a time: a
//! reserve checks and holds on all its scopes with nobody in between, and of
//! concurrent settles exactly one sees a threshold crossed. Hold expiries
//! and GCRA times come from the server's `TIME`, never a replica's clock,
//! so replicas whose clocks differ still agree. Times inside the scripts are
//! microseconds; ttls travel in milliseconds, rounded up.
//!
//! The scripts touch several keys and so need one Redis (with replicas or
//! not), not a Redis Cluster. They rely on script effects replication (the
//! default since Redis 5).
//!
//! # Failure
//!
//! [`Shared::new`] only parses the URL; the connection is made on first use
//! and remade by itself after it breaks (a call that finds it broken fails,
//! the next one reconnects). Every call, connecting included, is bounded by
//! the configured timeout and fails with [`SharedError::Unavailable`]
//! rather than hang. What to do then is the caller's choice: fall back to
//! its in-process state (rate limits, the cache) or refuse the request
//! (hard budget caps, which must fail closed).
//!
//! A call that timed out may still have run on the server. For a reserve
//! that costs a hold until its ttl. A settle is idempotent per hold id (a
//! `P:settled:HOLD` marker, kept an hour): a caller may retry one safely.

use std::fmt;
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, FromRedisValue, RedisResult, Script, ScriptInvocation};
use tokio::sync::OnceCell;

use crate::ledger::{Micros, ScopeWindow, Settled, Short};

/// Where the shared state lives.
#[derive(Clone)]
pub struct SharedConfig {
    /// `redis://[:PASSWORD@]HOST:PORT[/DB]`; may hold a password, so it is
    /// never printed.
    pub url: String,
    /// The most one call may take, connecting included.
    pub timeout: Duration,
    /// Put before every key, so several deployments can share one Redis.
    pub prefix: String,
}

impl fmt::Debug for SharedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedConfig")
            .field("timeout", &self.timeout)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    /// Connection refused, timeout, I/O, server error: callers fall back or
    /// fail closed.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
}

/// A handle on the shared state; clones share one connection.
#[derive(Clone)]
pub struct Shared {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    timeout: Duration,
    prefix: String,
    /// Made on first use (it needs a Tokio runtime, `new` may run outside
    /// one); it reconnects by itself from then on.
    connection: OnceCell<ConnectionManager>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("timeout", &self.inner.timeout)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Only an unparsable URL fails; a server that is down is found out
    /// (and reconnected to) on use.
    pub fn new(cfg: &SharedConfig) -> Result<Shared, SharedError> {
        let client = Client::open(cfg.url.as_str())
            .map_err(|e| SharedError::Unavailable(format!("invalid redis url: {e}")))?;
        Ok(Shared {
            inner: Arc::new(Inner {
                client,
                timeout: cfg.timeout,
                prefix: cfg.prefix.clone(),
                connection: OnceCell::new(),
            }),
        })
    }

    /// Whether the server answers, within the timeout.
    pub async fn ping(&self) -> Result<(), SharedError> {
        self.query(&redis::cmd("PING")).await
    }

    /// GCRA like governor's `Quota::per_minute(per_minute)`: emission
    /// interval 60 s / `per_minute`, burst `per_minute` (a whole minute's
    /// worth at once). Takes `cost` units (cost 0 treated as 1). `Ok(Ok(()))`
    /// admitted; `Ok(Err(retry_after))` refused (nothing taken); a cost
    /// larger than `per_minute` never fits: `Ok(Err(60 s))`. Uses Redis
    /// server time so replicas agree.
    ///
    /// `name` identifies the limit (e.g. `model:gpt:rpm`); its state
    /// expires once the limit is back to a full burst.
    pub async fn gcra(
        &self,
        name: &str,
        per_minute: u32,
        cost: u32,
    ) -> Result<Result<(), Duration>, SharedError> {
        let cost = cost.max(1);
        if cost > per_minute {
            // More than a minute's worth at once can never fit.
            return Ok(Err(Duration::from_secs(60)));
        }
        let wait_us: u64 = self
            .eval(
                SCRIPTS
                    .gcra
                    .key(self.key("gcra", name))
                    .arg(per_minute)
                    .arg(cost),
            )
            .await?;
        Ok(match wait_us {
            0 => Ok(()),
            us => Err(Duration::from_micros(us)),
        })
    }

    /// [`LocalLedger::reserve`](crate::ledger::LocalLedger::reserve), atomic
    /// across all scopes and replicas: purges expired holds, checks every
    /// scope (its window's spend plus its live holds plus `amount` against
    /// its limit), refuses with the first [`Short`], else holds `amount` on
    /// every scope. The hold expires `ttl` (at least 1 ms) after now by the
    /// Redis clock.
    pub async fn reserve(
        &self,
        hold: &str,
        amount: Micros,
        scopes: &[ScopeWindow],
        ttl: Duration,
    ) -> Result<Result<(), Short>, SharedError> {
        let mut call = SCRIPTS.reserve.prepare_invoke();
        call.arg(hold).arg(amount).arg(millis(ttl).max(1));
        for s in scopes {
            self.scope_keys(&mut call, &s.scope);
            call.arg(s.limit).arg(s.window.len()).arg(&s.window);
        }
        // Empty when held; else the refusal's (index, spent, reserved).
        let short: Vec<Micros> = self.eval(&call).await?;
        match short[..] {
            [] => Ok(Ok(())),
            [index, spent, reserved] => Ok(Err(Short {
                index: usize::try_from(index).unwrap_or(usize::MAX),
                spent,
                reserved,
            })),
            _ => Err(SharedError::Unavailable(format!(
                "unexpected reserve reply {short:?}"
            ))),
        }
    }

    /// [`LocalLedger::settle`](crate::ledger::LocalLedger::settle) in one
    /// script: on every scope, releases `hold` (if still live), books
    /// `max(actual, 0)` into the current bucket, drops buckets older than
    /// the window, and returns the window's spend before and after. Each
    /// scope's spend then expires `keep` after this write (never, for a
    /// `keep` of zero).
    pub async fn settle(
        &self,
        hold: &str,
        actual: Micros,
        scopes: &[ScopeWindow],
    ) -> Result<Vec<Settled>, SharedError> {
        let mut call = SCRIPTS.settle.prepare_invoke();
        call.key(self.key("settled", hold))
            .arg(hold)
            .arg(actual.max(0))
            .arg(millis(SETTLED_MARKER));
        for s in scopes {
            self.scope_keys(&mut call, &s.scope);
            let oldest = s.window.iter().min().map_or("", String::as_str);
            call.arg(&s.current)
                .arg(millis(s.keep))
                .arg(oldest)
                .arg(s.window.len())
                .arg(&s.window);
        }
        let spend: Vec<(Micros, Micros)> = self.eval(&call).await?;
        Ok(spend
            .into_iter()
            .map(|(before, after)| Settled { before, after })
            .collect())
    }

    /// Window spend and live holds of one scope.
    pub async fn usage(&self, scope: &ScopeWindow) -> Result<(Micros, Micros), SharedError> {
        let mut call = SCRIPTS.usage.prepare_invoke();
        self.scope_keys(&mut call, &scope.scope);
        call.arg(&scope.window);
        self.eval(&call).await
    }

    /// The response cache's bytes stored under `key`, if any.
    pub async fn cache_get(&self, key: &[u8; 32]) -> Result<Option<Vec<u8>>, SharedError> {
        self.query(redis::cmd("GET").arg(self.cache_key(key))).await
    }

    /// Stores the response cache's bytes under `key` for `ttl` (rounded up
    /// to whole milliseconds; a zero ttl stores nothing).
    pub async fn cache_put(
        &self,
        key: &[u8; 32],
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), SharedError> {
        if ttl.is_zero() {
            return Ok(());
        }
        self.query(
            redis::cmd("SET")
                .arg(self.cache_key(key))
                .arg(value)
                .arg("PX")
                .arg(millis(ttl)),
        )
        .await
    }

    /// Tells the other replicas that this one's breaker for `name` is open
    /// for `remaining` more.
    pub async fn breaker_open(&self, name: &str, remaining: Duration) -> Result<(), SharedError> {
        if remaining.is_zero() {
            return Ok(());
        }
        self.query(
            redis::cmd("SET")
                .arg(self.key("breaker", name))
                .arg(1)
                .arg("PX")
                .arg(millis(remaining)),
        )
        .await
    }

    /// How much longer some replica's breaker for `name` stays open, if one is.
    pub async fn breaker_open_for(&self, name: &str) -> Result<Option<Duration>, SharedError> {
        let ms: i64 = self
            .query(redis::cmd("PTTL").arg(self.key("breaker", name)))
            .await?;
        // -2: no such key; -1: no expiry (never written by keel).
        Ok(u64::try_from(ms)
            .ok()
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis))
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}:{kind}:{name}", self.inner.prefix)
    }

    fn cache_key(&self, key: &[u8; 32]) -> String {
        let mut hex = String::with_capacity(64);
        for byte in key {
            // Writing to a String cannot fail.
            let _ = write!(hex, "{byte:02x}");
        }
        self.key("cache", &hex)
    }

    /// A scope's two keys, in the order the ledger scripts read them.
    fn scope_keys(&self, call: &mut ScriptInvocation<'_>, scope: &str) {
        call.key(self.key("holds", scope))
            .key(self.key("spend", scope));
    }

    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, SharedError> {
        self.bounded(async { cmd.query_async(&mut self.connection().await?).await })
            .await
    }

    async fn eval<T: FromRedisValue>(&self, call: &ScriptInvocation<'_>) -> Result<T, SharedError> {
        self.bounded(async { call.invoke_async(&mut self.connection().await?).await })
            .await
    }

    /// `op` within the timeout, its errors as [`SharedError::Unavailable`].
    async fn bounded<T>(&self, op: impl Future<Output = RedisResult<T>>) -> Result<T, SharedError> {
        match tokio::time::timeout(self.inner.timeout, op).await {
            Ok(result) => result.map_err(|e| SharedError::Unavailable(e.to_string())),
            Err(_) => Err(SharedError::Unavailable(format!(
                "timed out after {:?}",
                self.inner.timeout
            ))),
        }
    }

    async fn connection(&self) -> RedisResult<ConnectionManager> {
        let inner = &self.inner;
        inner
            .connection
            .get_or_try_init(|| async {
                // One connection attempt per call, bounded like the call:
                // a failed one is retried by the next call, not in a
                // backoff loop that outlives it.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(inner.timeout))
                    .set_response_timeout(Some(inner.timeout))
                    .set_number_of_retries(0);
                ConnectionManager::new_lazy_with_config(inner.client.clone(), config)
            })
            .await
            .cloned()
    }
}

/// How long a settled hold is remembered: longer than any retry of its
/// settle could come (the local ledger's memory, for the same semantics).
const SETTLED_MARKER: Duration = crate::ledger::SETTLED_MEMORY;

/// Whole milliseconds, rounded up; at most a century (what Redis expiries
/// and the scripts' arithmetic hold with room to spare).
fn millis(d: Duration) -> u64 {
    const CENTURY_MS: u64 = 100 * 365 * 86_400 * 1000;
    u64::try_from(d.as_micros().div_ceil(1000)).map_or(CENTURY_MS, |ms| ms.min(CENTURY_MS))
}

/// The Lua scripts, hashed once.
struct Scripts {
    gcra: Script,
    reserve: Script,
    settle: Script,
    usage: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| {
    let script = |body: &str| Script::new(&format!("{LUA_COMMON}\n{body}"));
    Scripts {
        gcra: script(LUA_GCRA),
        reserve: script(LUA_RESERVE),
        settle: script(LUA_SETTLE),
        usage: script(LUA_USAGE),
    }
});

/// Helpers every script starts with.
const LUA_COMMON: &str = r#"
-- The server's clock in microseconds: the same for every replica.
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- Whether a sorts before b byte by byte, as Rust compares strings (Lua's
-- `<` follows the server's locale).
local function sorts_before(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = a:byte(i), b:byte(i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- Drops a scope's expired holds; returns the sum of the live ones. A hold
-- is "AMOUNT EXPIRES_US", live while it expires after now.
local function live_holds(holds, now)
  local sum = 0
  local all = redis.call('HGETALL', holds)
  for i = 1, #all, 2 do
    local hold = all[i + 1]
    local space = string.find(hold, ' ', 1, true)
    if tonumber(string.sub(hold, space + 1)) > now then
      sum = sum + tonumber(string.sub(hold, 1, space - 1))
    else
      redis.call('HDEL', holds, all[i])
    end
  end
  return sum
end

-- A window's spend: the sum of its buckets (missing ones count 0).
local function window_spend(spend, buckets)
  if #buckets == 0 then return 0 end
  local sum = 0
  for _, v in ipairs(redis.call('HMGET', spend, unpack(buckets))) do
    sum = sum + (tonumber(v) or 0)
  end
  return sum
end

-- The bucket list at ARGV[i] (its length first), and the position after it.
local function buckets_at(i)
  local n = tonumber(ARGV[i])
  local buckets = {}
  for j = 1, n do buckets[j] = ARGV[i + j] end
  return buckets, i + n + 1
end
"#;

/// KEYS: the limit's state. ARGV: per_minute, cost (1 <= cost <= per_minute).
/// Returns 0 when admitted, else the microseconds to wait.
const LUA_GCRA: &str = r#"
local per_minute, cost = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = now_us()
local interval = 60000000 / per_minute
local tolerance = interval * (per_minute - 1)
local extra = interval * (cost - 1)
local tat = tonumber(redis.call('GET', KEYS[1])) or now
local earliest = tat + extra - tolerance
if now < earliest then
  return math.ceil(earliest - now)
end
local next_tat = math.ceil(math.max(tat, now) + interval + extra)
-- Past next_tat the state is the same as no state.
redis.call('SET', KEYS[1], next_tat, 'PX', math.ceil((next_tat - now) / 1000))
return 0
"#;

/// KEYS: per scope, its holds then its spend. ARGV: hold, amount, ttl_ms,
/// then per scope: limit, the window's bucket count, its buckets.
/// Returns {} when held, else {index (from 0), spent, reserved}.
const LUA_RESERVE: &str = r#"
local hold, amount, ttl_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_us()
local pos = 4
for s = 1, #KEYS / 2 do
  local limit = tonumber(ARGV[pos])
  local buckets
  buckets, pos = buckets_at(pos + 1)
  local reserved = live_holds(KEYS[2 * s - 1], now)
  local spent = window_spend(KEYS[2 * s], buckets)
  if spent + reserved + amount > limit then
    return {s - 1, spent, reserved}
  end
end
local value = ARGV[2] .. ' ' .. string.format('%d', now + ttl_ms * 1000)
for s = 1, #KEYS / 2 do
  local holds = KEYS[2 * s - 1]
  redis.call('HSET', holds, hold, value)
  -- The key lives as long as its longest hold (PTTL is -1 on a new key).
  if redis.call('PTTL', holds) < ttl_ms then
    redis.call('PEXPIRE', holds, ttl_ms)
  end
end
return {}
"#;

/// KEYS: the hold's settled marker, then per scope its holds and its
/// spend. ARGV: hold, actual (>= 0), the marker's ttl_ms, then per scope:
/// current bucket, keep_ms, the window's oldest bucket, the window's bucket
/// count, its buckets. Returns {before, after} per scope. A hold settled
/// before (a retried call whose first try ran) books nothing again.
const LUA_SETTLE: &str = r#"
local hold, actual = ARGV[1], ARGV[2]
local first = redis.call('SET', KEYS[1], '1', 'NX', 'PX', tonumber(ARGV[3]))
if not first then actual = 0 end
local pos = 4
local settled = {}
for s = 1, (#KEYS - 1) / 2 do
  local holds, spend = KEYS[2 * s], KEYS[2 * s + 1]
  local current, keep_ms, oldest = ARGV[pos], tonumber(ARGV[pos + 1]), ARGV[pos + 2]
  local buckets
  buckets, pos = buckets_at(pos + 3)
  redis.call('HDEL', holds, hold)
  local before = window_spend(spend, buckets)
  redis.call('HINCRBY', spend, current, actual)
  -- Buckets no window reaches any more go.
  for _, bucket in ipairs(redis.call('HKEYS', spend)) do
    if sorts_before(bucket, oldest) then
      redis.call('HDEL', spend, bucket)
    end
  end
  if keep_ms > 0 then
    redis.call('PEXPIRE', spend, keep_ms)
  end
  settled[s] = {before, window_spend(spend, buckets)}
end
return settled
"#;

/// KEYS: the scope's holds, its spend. ARGV: the window's buckets.
/// Returns {spent, reserved}.
const LUA_USAGE: &str = r#"
local reserved = live_holds(KEYS[1], now_us())
return {window_spend(KEYS[2], ARGV), reserved}
"#;
