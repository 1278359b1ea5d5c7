//! Reading a store without writing it: `cpm-iwf store stats|list` (issue 7: "depth per user,
//! oldest age (read-only, safe while running)").

use bytes::Bytes;

use super::{Limits, Location, Pending, Result, Store, StoreStats};

/// A store opened for reading only, whatever its backend: what `cpm-iwf store stats|list`
/// uses, safe while a node runs (redb: [`redb::RedbReader`] on the node's shared file; Redis:
/// plain reads).
pub enum Reader {
    /// An embedded store file.
    Redb(super::redb::RedbReader),
    /// A Redis/Valkey store.
    Redis(Box<super::redis::RedisStore>),
}

impl Reader {
    /// Opens the store at `location` for reading. A Redis that does not promise durability is
    /// still read (only a writer must refuse it).
    pub async fn open(location: &Location) -> Result<Reader> {
        match location {
            Location::Redb(path) => Ok(Reader::Redb(super::redb::RedbReader::open(path)?)),
            Location::Redis(url) => {
                let options = super::redis::RedisOptions {
                    require_durable: false,
                    ..super::redis::RedisOptions::default()
                };
                Ok(Reader::Redis(Box::new(
                    super::redis::RedisStore::open(url, Limits::default(), options).await?,
                )))
            }
        }
    }

    /// As [`Store::stats`].
    pub async fn stats(&self, limit: usize) -> Result<StoreStats> {
        match self {
            Reader::Redb(r) => r.stats(limit),
            Reader::Redis(r) => r.stats(limit).await,
        }
    }

    /// As [`Store::pending`].
    pub async fn pending(
        &self,
        recipient: Bytes,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Pending>> {
        match self {
            Reader::Redb(r) => r.pending(recipient, after, limit),
            Reader::Redis(r) => r.pending(recipient, after, limit).await,
        }
    }

    /// As [`Store::users_with_pending`].
    pub async fn users_with_pending(
        &self,
        after: Option<Bytes>,
        limit: usize,
    ) -> Result<Vec<Bytes>> {
        match self {
            Reader::Redb(r) => r.users_with_pending(after, limit),
            Reader::Redis(r) => r.users_with_pending(after, limit).await,
        }
    }
}

/// `cpm-iwf store stats`: totals, then one line per user (up to `limit`): messages, bytes and
/// the age of the oldest, at `now_unix_ms`.
pub fn format_stats(stats: &StoreStats, now_unix_ms: u64) -> String {
    use std::fmt::Write as _;
    let age = |t: Option<u64>| match t {
        Some(t) => format!("{}s", now_unix_ms.saturating_sub(t) / 1000),
        None => "-".to_string(),
    };
    let mut out = format!(
        "messages {}  bytes {}  users {}  oldest {}\n",
        stats.messages,
        stats.bytes,
        stats.users,
        age(stats.oldest_received_unix_ms)
    );
    if !stats.per_user.is_empty() {
        out.push_str("user\tmessages\tbytes\toldest\n");
    }
    for u in &stats.per_user {
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}",
            String::from_utf8_lossy(&u.recipient),
            u.messages,
            u.bytes,
            age(u.oldest_received_unix_ms)
        );
    }
    out
}

/// `cpm-iwf store list --user U`: one line per kept message, oldest first.
pub fn format_pending(list: &[Pending], now_unix_ms: u64) -> String {
    use std::fmt::Write as _;
    let mut out = String::from("seq\tkind\tmessage-id\tage\texpires-in\tbytes\tsender\n");
    let text = |b: &Option<Bytes>| {
        b.as_ref()
            .map_or("-".to_string(), |b| String::from_utf8_lossy(b).into_owned())
    };
    for p in list {
        let m = &p.message;
        let _ = writeln!(
            out,
            "{}\t{:?}\t{}\t{}s\t{}s\t{}\t{}",
            p.key.seq,
            m.kind,
            text(&m.message_id),
            now_unix_ms.saturating_sub(m.received_at_unix_ms) / 1000,
            m.expires_at_unix_ms.saturating_sub(now_unix_ms) / 1000,
            m.payload.len(),
            String::from_utf8_lossy(&m.sender.aor)
        );
    }
    out
}
