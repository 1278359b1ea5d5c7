//! The shared backend: Redis or Valkey (RESP), for several nodes that serve the same users.
//!
//! Durability is the server's: a write is on disk when Redis answers only with `appendonly yes`
//! and `appendfsync always` (the AOF is fsync'd before the reply; with `everysec` up to a second
//! of acknowledged messages can be lost). [`RedisStore::open`] reads both with `CONFIG GET` and
//! by default refuses a server that does not promise it ([`StoreError::NotDurable`]): issue 7
//! says nothing accepted may be lost, and a warning in a log would let a node answer 202 for
//! messages a Redis restart then forgets. A managed server that hides `CONFIG` is refused too,
//! unless [`RedisOptions::require_durable`] is turned off by an operator who checked it.
//!
//! Every write is one Lua script, which Redis runs atomically and propagates to the AOF as one
//! `MULTI`/`EXEC` unit: a crash leaves the write whole or absent (Redis drops a truncated last
//! transaction when it loads the AOF). The scripts check sizes and quotas before their first
//! write, so a refusal writes nothing. They build key names from the prefix, so the server must
//! be a standalone Redis/Valkey (with replicas if wanted), not a Redis Cluster.
//!
//! Keys (prefix `P`, default `cpm-iwf:`; `R` a recipient, `S` a sequence number):
//! - `P seq`: the sequence counter (INCR);
//! - `P total`: hash `messages`, `bytes`;
//! - `P users`: sorted set of recipients with messages waiting (score 0, by address);
//! - `P q:R`: sorted set of R's sequence numbers (the queue, in order);
//! - `P m:R`: hash S -> record ([`super::codec`]);
//! - `P u:R`: hash `messages`, `bytes` (quota);
//! - `P id:R`: hash Message-ID -> S; `P rid:R`: hash S -> Message-ID (dedup);
//! - `P exp`: sorted set of `S:R` by expiry;
//! - `P o:ID`: the origin of message ID (JSON), expiring with Redis' own `PXAT`.

use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, Script};
use bytes::Bytes;

use super::codec::{decode_message, encode_message};
use super::{
    Limits, MessageKey, Pending, Result, Store, StoreError, StoreFuture, StoreReceipt, StoreStats,
    StoredMessage, UserStats, check_sizes, decode_origin, encode_origin,
};
use crate::translate::state::MessageOrigin;

/// Options of the Redis store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// The prefix of every key (several gateways may share one server with different ones).
    pub prefix: String,
    /// Refuse a server without `appendonly yes` and `appendfsync always` (or whose `CONFIG` is
    /// hidden). Default: on.
    pub require_durable: bool,
    /// Longest wait for one operation. A put that times out may still have been stored: the
    /// node answers 503, and the sender's retry with the same Message-ID is deduplicated.
    pub op_timeout: Duration,
    /// Longest wait to connect.
    pub connect_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            prefix: "cpm-iwf:".into(),
            require_durable: true,
            op_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

/// Shared by the scripts that remove a message: removes S of R and its index entries.
const REMOVE_FN: &str = r#"
local function remove(p, rec, seq, len)
  redis.call('HDEL', p..'m:'..rec, seq)
  redis.call('ZREM', p..'q:'..rec, seq)
  local id = redis.call('HGET', p..'rid:'..rec, seq)
  if id then
    redis.call('HDEL', p..'rid:'..rec, seq)
    if redis.call('HGET', p..'id:'..rec, id) == seq then
      redis.call('HDEL', p..'id:'..rec, id)
    end
  end
  redis.call('ZREM', p..'exp', seq..':'..rec)
  local left = redis.call('HINCRBY', p..'u:'..rec, 'messages', -1)
  if left <= 0 then
    redis.call('DEL', p..'u:'..rec, p..'q:'..rec, p..'m:'..rec, p..'id:'..rec, p..'rid:'..rec)
    redis.call('ZREM', p..'users', rec)
  else
    redis.call('HINCRBY', p..'u:'..rec, 'bytes', -len)
  end
  redis.call('HINCRBY', p..'total', 'messages', -1)
  redis.call('HINCRBY', p..'total', 'bytes', -len)
end
"#;

/// ARGV: prefix, recipient, Message-ID ('' = none), record, expires_at, max user messages,
/// max user bytes, max total bytes. Returns {0, seq} | {1, seq} (duplicate) |
/// {2, messages, bytes} (user quota) | {3, bytes} (store full).
const PUT: &str = r#"
local p, rec, id, record, exp = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local maxm, maxb, maxt = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
if id ~= '' then
  local s = redis.call('HGET', p..'id:'..rec, id)
  if s then return {1, tonumber(s)} end
end
local u = redis.call('HMGET', p..'u:'..rec, 'messages', 'bytes')
local cnt = u[1] and tonumber(u[1]) or 0
local by = u[2] and tonumber(u[2]) or 0
local len = string.len(record)
if cnt >= maxm or by + len > maxb then return {2, cnt, by} end
local tot = redis.call('HGET', p..'total', 'bytes')
tot = tot and tonumber(tot) or 0
if tot + len > maxt then return {3, tot} end
local seq = redis.call('INCR', p..'seq')
redis.call('HSET', p..'m:'..rec, seq, record)
redis.call('ZADD', p..'q:'..rec, seq, seq)
redis.call('HINCRBY', p..'u:'..rec, 'messages', 1)
redis.call('HINCRBY', p..'u:'..rec, 'bytes', len)
redis.call('HINCRBY', p..'total', 'messages', 1)
redis.call('HINCRBY', p..'total', 'bytes', len)
redis.call('ZADD', p..'users', 0, rec)
redis.call('ZADD', p..'exp', exp, seq..':'..rec)
if id ~= '' then
  redis.call('HSET', p..'id:'..rec, id, seq)
  redis.call('HSET', p..'rid:'..rec, seq, id)
end
return {0, seq}
"#;

/// ARGV: prefix, recipient, seq. Returns 1 if removed, 0 if it was not there.
const ACK: &str = r#"
local p, rec, seq = ARGV[1], ARGV[2], ARGV[3]
local record = redis.call('HGET', p..'m:'..rec, seq)
if not record then return 0 end
remove(p, rec, seq, string.len(record))
return 1
"#;

/// ARGV: prefix, now, limit. Returns recipient, seq, record, ... for each message removed.
const TAKE_EXPIRED: &str = r#"
local p, now, limit = ARGV[1], ARGV[2], ARGV[3]
local due = redis.call('ZRANGEBYSCORE', p..'exp', '-inf', now, 'LIMIT', 0, limit)
local out = {}
for _, member in ipairs(due) do
  local c = string.find(member, ':', 1, true)
  local record = false
  local seq, rec
  if c then
    seq = string.sub(member, 1, c - 1)
    rec = string.sub(member, c + 1)
    record = redis.call('HGET', p..'m:'..rec, seq)
  end
  if record then
    remove(p, rec, seq, string.len(record))
    table.insert(out, rec)
    table.insert(out, seq)
    table.insert(out, record)
  else
    redis.call('ZREM', p..'exp', member)
  end
end
return out
"#;

/// The Redis store. Cheap to share: the connection is multiplexed and reconnects by itself.
pub struct RedisStore {
    con: ConnectionManager,
    limits: Limits,
    options: RedisOptions,
    put: Script,
    ack: Script,
    take_expired: Script,
}

impl RedisStore {
    /// Connects to `url`, checks that the server is durable (see the module), and loads nothing
    /// else: the scripts are sent on first use.
    pub async fn open(url: &str, limits: Limits, options: RedisOptions) -> Result<RedisStore> {
        let client = Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.op_timeout))
            .set_number_of_retries(2);
        let con = tokio::time::timeout(
            options.connect_timeout.saturating_mul(2),
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| StoreError::Unavailable(format!("connect to {url}: timed out")))?
        .map_err(classify)?;
        let store = RedisStore {
            con,
            limits,
            options,
            put: Script::new(PUT),
            ack: Script::new(&format!("{REMOVE_FN}{ACK}")),
            take_expired: Script::new(&format!("{REMOVE_FN}{TAKE_EXPIRED}")),
        };
        store.check_durable().await?;
        Ok(store)
    }

    async fn check_durable(&self) -> Result<()> {
        let mut con = self.con.clone();
        let read = |name: &'static str| {
            let mut cmd = ::redis::cmd("CONFIG");
            cmd.arg("GET").arg(name);
            let mut con = con.clone();
            async move {
                let pairs: Vec<String> = cmd.query_async(&mut con).await.map_err(classify)?;
                Ok::<_, StoreError>(pairs.get(1).cloned().unwrap_or_default())
            }
        };
        let verdict = match (read("appendonly").await, read("appendfsync").await) {
            (Ok(aof), Ok(fsync)) if aof == "yes" && fsync == "always" => Ok(()),
            (Ok(aof), Ok(fsync)) => Err(format!(
                "appendonly {aof:?}, appendfsync {fsync:?} (need \"yes\", \"always\")"
            )),
            (Err(e), _) | (_, Err(e)) => Err(format!("CONFIG GET failed: {e}")),
        };
        // Touch the connection once more so a dead server is reported here, not on first put.
        let _: () = ::redis::cmd("PING")
            .query_async(&mut con)
            .await
            .map(|_: String| ())
            .map_err(classify)?;
        match verdict {
            Ok(()) => Ok(()),
            Err(why) if self.options.require_durable => Err(StoreError::NotDurable(why)),
            Err(why) => {
                tracing::warn!(%why, "store: redis is not configured for durability; acknowledged messages may be lost");
                Ok(())
            }
        }
    }

    fn key(&self, kind: &str, rec: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.options.prefix.len() + kind.len() + rec.len());
        k.extend_from_slice(self.options.prefix.as_bytes());
        k.extend_from_slice(kind.as_bytes());
        k.extend_from_slice(rec);
        k
    }

    async fn timed<T>(
        &self,
        f: impl std::future::Future<Output = std::result::Result<T, ::redis::RedisError>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.options.op_timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(classify(e)),
            Err(_) => Err(StoreError::Unavailable("redis timed out".into())),
        }
    }

    async fn oldest(&self, rec: &[u8]) -> Result<Option<u64>> {
        let mut con = self.con.clone();
        let first: Vec<Vec<u8>> = self
            .timed(
                ::redis::cmd("ZRANGE")
                    .arg(self.key("q:", rec))
                    .arg(0)
                    .arg(0)
                    .query_async(&mut con),
            )
            .await?;
        let Some(seq) = first.into_iter().next() else {
            return Ok(None);
        };
        let record: Option<Vec<u8>> = self
            .timed(
                ::redis::cmd("HGET")
                    .arg(self.key("m:", rec))
                    .arg(seq)
                    .query_async(&mut con),
            )
            .await?;
        match record {
            Some(r) => Ok(Some(decode_message(Bytes::from(r))?.received_at_unix_ms)),
            None => Ok(None),
        }
    }
}

/// A Redis error as a store error: one that a later try may not meet (the server down, slow,
/// loading its AOF after a restart, ...) is [`StoreError::Unavailable`] (503 with Retry-After);
/// the rest (a script or protocol fault) stays [`StoreError::Redis`].
fn classify(e: ::redis::RedisError) -> StoreError {
    let transient = e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || !matches!(e.retry_method(), ::redis::RetryMethod::NoRetry);
    if transient {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Redis(e)
    }
}

fn parse_seq(raw: &[u8]) -> Result<u64> {
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(StoreError::Corrupt("sequence number"))
}

impl Store for RedisStore {
    fn put(&self, message: StoredMessage) -> StoreFuture<'_, StoreReceipt> {
        Box::pin(async move {
            check_sizes(&message, &self.limits)?;
            let record = encode_message(&message);
            let mut con = self.con.clone();
            let mut call = self.put.prepare_invoke();
            call.arg(&self.options.prefix)
                .arg(message.recipient.as_ref())
                .arg(message.message_id.as_deref().unwrap_or_default())
                .arg(record)
                .arg(message.expires_at_unix_ms)
                .arg(self.limits.max_user_messages)
                .arg(self.limits.max_user_bytes)
                .arg(self.limits.max_total_bytes);
            let answer: Vec<u64> = self.timed(call.invoke_async(&mut con)).await?;
            let key = |seq| MessageKey {
                recipient: message.recipient.clone(),
                seq,
            };
            match answer.as_slice() {
                [0, seq] => Ok(StoreReceipt {
                    key: key(*seq),
                    duplicate: false,
                }),
                [1, seq] => Ok(StoreReceipt {
                    key: key(*seq),
                    duplicate: true,
                }),
                [2, messages, bytes] => Err(StoreError::UserQuota {
                    messages: *messages,
                    bytes: *bytes,
                }),
                [3, bytes] => Err(StoreError::StoreFull { bytes: *bytes }),
                _ => Err(StoreError::Corrupt("put script answer")),
            }
        })
    }

    fn pending(&self, recipient: Bytes, after: u64, limit: usize) -> StoreFuture<'_, Vec<Pending>> {
        Box::pin(async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let mut con = self.con.clone();
            let seqs: Vec<Vec<u8>> = self
                .timed(
                    ::redis::cmd("ZRANGEBYSCORE")
                        .arg(self.key("q:", &recipient))
                        .arg(format!("({after}"))
                        .arg("+inf")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(limit)
                        .query_async(&mut con),
                )
                .await?;
            if seqs.is_empty() {
                return Ok(Vec::new());
            }
            let records: Vec<Option<Vec<u8>>> = self
                .timed(
                    ::redis::cmd("HMGET")
                        .arg(self.key("m:", &recipient))
                        .arg(&seqs)
                        .query_async(&mut con),
                )
                .await?;
            let mut out = Vec::with_capacity(records.len());
            for (seq, record) in seqs.iter().zip(records) {
                // Acknowledged between the two reads: skip it.
                let Some(record) = record else { continue };
                out.push(Pending {
                    key: MessageKey {
                        recipient: recipient.clone(),
                        seq: parse_seq(seq)?,
                    },
                    message: decode_message(Bytes::from(record))?,
                });
            }
            Ok(out)
        })
    }

    fn ack_delivered(&self, key: MessageKey) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let mut con = self.con.clone();
            let mut call = self.ack.prepare_invoke();
            call.arg(&self.options.prefix)
                .arg(key.recipient.as_ref())
                .arg(key.seq);
            let removed: u64 = self.timed(call.invoke_async(&mut con)).await?;
            Ok(removed == 1)
        })
    }

    fn take_expired(&self, now_unix_ms: u64, limit: usize) -> StoreFuture<'_, Vec<Pending>> {
        Box::pin(async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let mut con = self.con.clone();
            let mut call = self.take_expired.prepare_invoke();
            call.arg(&self.options.prefix).arg(now_unix_ms).arg(limit);
            let flat: Vec<Vec<u8>> = self.timed(call.invoke_async(&mut con)).await?;
            let mut out = Vec::with_capacity(flat.len() / 3);
            let mut it = flat.into_iter();
            while let (Some(rec), Some(seq), Some(record)) = (it.next(), it.next(), it.next()) {
                match decode_message(Bytes::from(record)) {
                    Ok(message) => out.push(Pending {
                        key: MessageKey {
                            recipient: Bytes::from(rec),
                            seq: parse_seq(&seq)?,
                        },
                        message,
                    }),
                    Err(e) => {
                        tracing::warn!(error = %e, "store: dropped an expired record that does not decode");
                    }
                }
            }
            // Origins expire by themselves (PXAT).
            Ok(out)
        })
    }

    fn stats(&self, limit: usize) -> StoreFuture<'_, StoreStats> {
        Box::pin(async move {
            let mut con = self.con.clone();
            let total: (Option<u64>, Option<u64>) = self
                .timed(
                    ::redis::cmd("HMGET")
                        .arg(self.key("total", b""))
                        .arg("messages")
                        .arg("bytes")
                        .query_async(&mut con),
                )
                .await?;
            let users: u64 = self
                .timed(
                    ::redis::cmd("ZCARD")
                        .arg(self.key("users", b""))
                        .query_async(&mut con),
                )
                .await?;
            let mut stats = StoreStats {
                messages: total.0.unwrap_or(0),
                bytes: total.1.unwrap_or(0),
                users,
                ..StoreStats::default()
            };
            for rec in self.users_with_pending(None, limit).await? {
                let (messages, bytes): (Option<u64>, Option<u64>) = self
                    .timed(
                        ::redis::cmd("HMGET")
                            .arg(self.key("u:", &rec))
                            .arg("messages")
                            .arg("bytes")
                            .query_async(&mut con),
                    )
                    .await?;
                let oldest = self.oldest(&rec).await?;
                if let Some(at) = oldest {
                    stats.oldest_received_unix_ms =
                        Some(stats.oldest_received_unix_ms.map_or(at, |o| o.min(at)));
                }
                stats.per_user.push(UserStats {
                    recipient: rec,
                    messages: messages.unwrap_or(0),
                    bytes: bytes.unwrap_or(0),
                    oldest_received_unix_ms: oldest,
                });
            }
            Ok(stats)
        })
    }

    fn users_with_pending(
        &self,
        after: Option<Bytes>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<Bytes>> {
        Box::pin(async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let mut con = self.con.clone();
            // ZRANGEBYLEX bounds: '-' (from the start) or '(' + value (exclusive).
            let lower: Vec<u8> = match after {
                Some(a) => {
                    let mut v = Vec::with_capacity(a.len() + 1);
                    v.push(b'(');
                    v.extend_from_slice(&a);
                    v
                }
                None => b"-".to_vec(),
            };
            let users: Vec<Vec<u8>> = self
                .timed(
                    ::redis::cmd("ZRANGEBYLEX")
                        .arg(self.key("users", b""))
                        .arg(lower)
                        .arg("+")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(limit)
                        .query_async(&mut con),
                )
                .await?;
            Ok(users.into_iter().map(Bytes::from).collect())
        })
    }

    fn put_origin(
        &self,
        message_id: Bytes,
        origin: MessageOrigin,
        expires_at_unix_ms: u64,
    ) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let len = message_id.len();
            if len == 0 || len > self.limits.max_field_bytes {
                return Err(StoreError::BadField {
                    field: "Message-ID",
                    len,
                    max: self.limits.max_field_bytes,
                });
            }
            let json = encode_origin(&origin)?;
            let mut con = self.con.clone();
            let _: () = self
                .timed(
                    ::redis::cmd("SET")
                        .arg(self.key("o:", &message_id))
                        .arg(json)
                        .arg("PXAT")
                        .arg(expires_at_unix_ms.max(1))
                        .query_async(&mut con),
                )
                .await?;
            Ok(())
        })
    }

    fn origin(
        &self,
        message_id: Bytes,
        _now_unix_ms: u64,
    ) -> StoreFuture<'_, Option<MessageOrigin>> {
        Box::pin(async move {
            let mut con = self.con.clone();
            let value: Option<Vec<u8>> = self
                .timed(
                    ::redis::cmd("GET")
                        .arg(self.key("o:", &message_id))
                        .query_async(&mut con),
                )
                .await?;
            value.map(|v| decode_origin(&v)).transpose()
        })
    }
}
