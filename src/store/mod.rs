//! Store-and-forward for users who are not available (CPM 2.0 §4.2: "storing of chat messages
//! and associated notifications while a chat participant is not available", and their
//! "delivery ... once the recipient becomes available"). Issue 7.
//!
//! A [`Store`] keeps [`StoredMessage`]s per recipient in arrival order (a sequence number the
//! store gives), and the `imdn.Message-ID` -> originating device mapping
//! ([`MessageOrigin`]) so that a late IMDN finds its device after a restart.
//!
//! The rule the node relies on: [`Store::put`] returns only after the message is durably
//! committed (redb: `Durability::Immediate`, fsync; Redis: AOF with `appendfsync always`), so
//! the node may answer 202 Accepted (pager) or 200 (MSRP SEND) as soon as `put` returns `Ok`.
//!
//! Two backends: [`redb::RedbStore`] (embedded, one file, the default) and
//! [`redis::RedisStore`] (Redis/Valkey, shared by several nodes). [`open`] picks one from a
//! location string ([`Location::parse`]).
//!
//! The trait is async and object safe (boxed futures): the node holds an `Arc<dyn Store>`
//! chosen at start from the configuration. redb is synchronous: its writes go to one writer
//! thread that commits them in groups (one fsync for all the puts waiting), its reads to
//! `spawn_blocking`; no runtime thread ever waits for a disk.
//!
//! How the node uses it (issue 7):
//! - start: `let store = store::open(&Location::parse(&cfg)?, limits).await?` (an
//!   `Arc<dyn Store>`); a Redis that is down or loading is [`StoreError::Unavailable`]: retry
//!   with backoff, stay not ready meanwhile.
//! - a pager MESSAGE towards an unavailable user: build a [`StoredMessage`] (payload: the
//!   translated request's wire bytes, `expires_at` = now + the side's max age), `put` it, answer
//!   202 only on `Ok`; on `Err(e)` answer `e.sip_status()`. A chat message in a session the node
//!   answered itself: the same with the CPIM body, the MSRP 200 only on `Ok`
//!   (`e.msrp_status()` otherwise). `put_origin` for its Message-ID like the table's entry.
//! - the user is back: page through `pending(user, after, n)`, send each in order, and
//!   `ack_delivered(key)` on its 2xx (MSRP 200). After a crash between send and ack the message
//!   is sent again with the same Message-ID: the recipient's device deduplicates by it.
//! - a timer: `take_expired(now, n)` and send the `failed` IMDNs the removed ones asked for.
//! - an IMDN whose Message-ID the in-memory table does not know: `origin(id, now)`.
//! - `cpm-iwf store stats|list`: [`redb::RedbReader`] on the file (the node must run with
//!   [`redb::RedbOptions::share_with_readers`]), or a [`redis::RedisStore`] opened on the URL.

pub mod codec;
pub mod reader;
pub mod reconnect;
pub mod redb;
pub mod redis;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use crate::translate::state::{Device, MessageOrigin, Side};

pub use codec::{decode_message, encode_message};
pub use reader::{Reader, format_pending, format_stats};

/// What a stored message is (how the node delivers it, and whether a `failed` IMDN is owed when
/// it expires).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A pager-mode SIP MESSAGE (RFC 3428); the payload is the translated request's wire bytes.
    Pager,
    /// A chat message of a session (the CPIM body of an MSRP SEND, RFC 3862).
    ChatMessage,
    /// A disposition notification (RFC 5438 `message/imdn+xml`, in CPIM).
    Imdn,
    /// An isComposing indication (RFC 3994).
    IsComposing,
}

impl Kind {
    /// Its code in the stored record.
    pub fn code(self) -> u8 {
        match self {
            Kind::Pager => 1,
            Kind::ChatMessage => 2,
            Kind::Imdn => 3,
            Kind::IsComposing => 4,
        }
    }

    /// The kind with that code.
    pub fn from_code(code: u8) -> Option<Kind> {
        match code {
            1 => Some(Kind::Pager),
            2 => Some(Kind::ChatMessage),
            3 => Some(Kind::Imdn),
            4 => Some(Kind::IsComposing),
            _ => None,
        }
    }
}

/// One message kept for a recipient who is not available.
///
/// Times are wall-clock unix milliseconds (not [`crate::time::Millis`], which counts from the
/// node's start and means nothing after a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The recipient's address of record (normalised as the translator does it): the queue.
    pub recipient: Bytes,
    /// The network the message is delivered into.
    pub to_side: Side,
    /// What it is.
    pub kind: Kind,
    /// What is delivered: a pager MESSAGE's wire bytes, or a CPIM body.
    pub payload: Bytes,
    /// `imdn.Message-ID` (RFC 5438 §6.3), when it has one: a second put with the same
    /// recipient and Message-ID is the same message (a sender's retransmission) and is not
    /// stored twice.
    pub message_id: Option<Bytes>,
    /// `Conversation-ID` (CPM 2.0 SD 5.2.1.1), kept for delivery.
    pub conversation_id: Option<Bytes>,
    /// `Contribution-ID`, kept for delivery.
    pub contribution_id: Option<Bytes>,
    /// CPIM `DateTime` as received (RFC 3862 §4.6), kept for delivery.
    pub date_time: Option<Bytes>,
    /// When the node accepted it (unix ms).
    pub received_at_unix_ms: u64,
    /// When it is given up (unix ms): [`Store::take_expired`] returns it from then on.
    pub expires_at_unix_ms: u64,
    /// The device that sent it: where a `failed` IMDN goes when it expires.
    pub sender: Device,
}

/// A stored message's name in the store: its recipient and its sequence number. Sequence
/// numbers grow with every put (store-wide), so they order each recipient's queue.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageKey {
    /// The recipient's address of record.
    pub recipient: Bytes,
    /// The sequence number (from 1).
    pub seq: u64,
}

/// What [`Store::put`] answers once the message is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreReceipt {
    /// The message's name.
    pub key: MessageKey,
    /// The recipient already had a pending message with this Message-ID: nothing new was
    /// stored and `key` names the one kept (answer the sender as for the first).
    pub duplicate: bool,
}

/// A message read back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Its name, for [`Store::ack_delivered`].
    pub key: MessageKey,
    /// The message.
    pub message: StoredMessage,
}

/// One recipient's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserStats {
    /// The recipient.
    pub recipient: Bytes,
    /// Messages waiting.
    pub messages: u64,
    /// Their stored size (encoded records).
    pub bytes: u64,
    /// When the oldest of them was received (unix ms).
    pub oldest_received_unix_ms: Option<u64>,
}

/// The whole store.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Messages waiting, all recipients.
    pub messages: u64,
    /// Their stored size.
    pub bytes: u64,
    /// Recipients with messages waiting.
    pub users: u64,
    /// When the oldest message of the users listed was received (unix ms).
    pub oldest_received_unix_ms: Option<u64>,
    /// The first recipients (by address, at most the `limit` asked for).
    pub per_user: Vec<UserStats>,
}

/// Sizes and quotas. A put over one of them fails with a typed error and stores nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload.
    pub max_payload_bytes: usize,
    /// Longest recipient, Message-ID, Conversation-ID, ... (each).
    pub max_field_bytes: usize,
    /// Most messages waiting for one recipient.
    pub max_user_messages: u64,
    /// Most stored bytes for one recipient.
    pub max_user_bytes: u64,
    /// Most stored bytes in the whole store.
    pub max_total_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // A pager MESSAGE is bounded by the SIP limit (64 KiB by default); a chat message
            // by what the relay reassembles. 256 KiB covers both with room.
            max_payload_bytes: 256 * 1024,
            max_field_bytes: 1024,
            max_user_messages: 1000,
            max_user_bytes: 16 * 1024 * 1024,
            max_total_bytes: 4 * 1024 * 1024 * 1024,
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The payload is over [`Limits::max_payload_bytes`].
    #[error("payload of {len} bytes is over the store's limit of {max}")]
    PayloadTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A field is over [`Limits::max_field_bytes`] (or empty where one is required).
    #[error("{field} of {len} bytes is outside 1..={max}")]
    BadField {
        /// Which.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The recipient's quota is used up.
    #[error("the recipient's store is full ({messages} messages, {bytes} bytes)")]
    UserQuota {
        /// Messages waiting.
        messages: u64,
        /// Bytes stored.
        bytes: u64,
    },
    /// The whole store is full ([`Limits::max_total_bytes`]).
    #[error("the store is full ({bytes} bytes)")]
    StoreFull {
        /// Bytes stored.
        bytes: u64,
    },
    /// The store cannot be reached now (Redis down or slow, the writer gone).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The embedded database failed.
    #[error("redb: {0}")]
    Redb(#[from] ::redb::Error),
    /// Redis answered an error.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// A stored record does not decode.
    #[error("corrupt stored record: {0}")]
    Corrupt(&'static str),
    /// The Redis server does not promise durability (`appendonly yes`, `appendfsync always`).
    #[error("redis is not durable: {0}")]
    NotDurable(String),
    /// The store location is not understood.
    #[error("bad store location: {0}")]
    BadLocation(String),
}

impl StoreError {
    /// The SIP final response the node answers a request it could not store with.
    ///
    /// - too large: 513 Message Too Large (RFC 3261 §21.5.11);
    /// - a bad field: 400 Bad Request;
    /// - the recipient's quota: 480 Temporarily Unavailable (§21.4.18), what the sender would
    ///   have had without a store: the recipient is not reachable and nothing more can be kept
    ///   for them (486 would say the user is busy; SIP has no 507);
    /// - the store full or unreachable: 503 Service Unavailable (§21.5.4, with Retry-After):
    ///   it is this node that cannot serve now;
    /// - anything else: 500.
    pub fn sip_status(&self) -> u16 {
        match self {
            StoreError::PayloadTooLarge { .. } => 513,
            StoreError::BadField { .. } => 400,
            StoreError::UserQuota { .. } => 480,
            StoreError::StoreFull { .. } | StoreError::Unavailable(_) => 503,
            _ => 500,
        }
    }

    /// The MSRP response code for a chat message the node could not store (RFC 4975 §10):
    /// 413 ("stop sending") when it is too large or the quota is used up, 400 for a bad field,
    /// and otherwise 403 (the node will not take it; MSRP has no 5xx for a server fault).
    pub fn msrp_status(&self) -> u16 {
        match self {
            StoreError::PayloadTooLarge { .. }
            | StoreError::UserQuota { .. }
            | StoreError::StoreFull { .. } => 413,
            StoreError::BadField { .. } => 400,
            _ => 403,
        }
    }
}

/// A store result.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What the [`Store`] methods return: a boxed future, so that `dyn Store` works.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// A durable store of messages for unavailable users. Every method is safe to call from many
/// tasks at once.
pub trait Store: Send + Sync {
    /// Stores `message` at the end of its recipient's queue. Returns once the message is
    /// durable, never before (answer the sender only then). A message whose recipient already
    /// has one pending with the same Message-ID is not stored twice
    /// ([`StoreReceipt::duplicate`]).
    fn put(&self, message: StoredMessage) -> StoreFuture<'_, StoreReceipt>;

    /// Up to `limit` messages of `recipient` with a sequence number above `after` (0: from the
    /// start), oldest first.
    fn pending(&self, recipient: Bytes, after: u64, limit: usize) -> StoreFuture<'_, Vec<Pending>>;

    /// Removes a delivered message. `Ok(false)`: it was not there (already acknowledged, or
    /// expired): a second acknowledgement is not an error.
    fn ack_delivered(&self, key: MessageKey) -> StoreFuture<'_, bool>;

    /// Removes and returns up to `limit` messages whose `expires_at` is at or before `now`
    /// (for the `failed` IMDNs the node owes), and forgets expired origins.
    fn take_expired(&self, now_unix_ms: u64, limit: usize) -> StoreFuture<'_, Vec<Pending>>;

    /// Totals, and the queues of the first `limit` recipients (by address).
    fn stats(&self, limit: usize) -> StoreFuture<'_, StoreStats>;

    /// Up to `limit` recipients with messages waiting, by address, those after `after` (a
    /// cursor: the last one of the previous call).
    fn users_with_pending(&self, after: Option<Bytes>, limit: usize)
    -> StoreFuture<'_, Vec<Bytes>>;

    /// Remembers where the notifications of message `message_id` go, until `expires_at`
    /// (durable, like `put`).
    fn put_origin(
        &self,
        message_id: Bytes,
        origin: MessageOrigin,
        expires_at_unix_ms: u64,
    ) -> StoreFuture<'_, ()>;

    /// Where the notifications of message `message_id` go, unless it expired before `now`.
    fn origin(&self, message_id: Bytes, now_unix_ms: u64)
    -> StoreFuture<'_, Option<MessageOrigin>>;
}

/// Where the store is: the `store` setting of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An embedded redb database file (created if missing).
    Redb(PathBuf),
    /// A Redis/Valkey server, by its URL (`redis://`, `rediss://`, `redis+unix://`, `unix://`).
    Redis(String),
}

impl Location {
    /// Parses a location: a Redis URL, `redb:PATH`, or a plain path (redb).
    pub fn parse(text: &str) -> Result<Location> {
        let text = text.trim();
        if text.is_empty() {
            return Err(StoreError::BadLocation("empty".into()));
        }
        let lower = text.to_ascii_lowercase();
        for scheme in [
            "redis://",
            "rediss://",
            "redis+unix://",
            "unix://",
            "valkey://",
        ] {
            if lower.starts_with(scheme) {
                // The redis crate knows `redis://`; `valkey://` is the same protocol.
                let url = match lower.strip_prefix("valkey://") {
                    Some(_) => format!("redis://{}", text.get(9..).unwrap_or_default()),
                    None => text.to_string(),
                };
                return Ok(Location::Redis(url));
            }
        }
        if let Some(path) = text.strip_prefix("redb:") {
            if path.is_empty() {
                return Err(StoreError::BadLocation("redb: without a path".into()));
            }
            return Ok(Location::Redb(PathBuf::from(path)));
        }
        if lower.contains("://") {
            return Err(StoreError::BadLocation(format!("unknown scheme in {text}")));
        }
        Ok(Location::Redb(PathBuf::from(text)))
    }
}

/// Opens the store at `location` with the default options of its backend.
pub async fn open(location: &Location, limits: Limits) -> Result<Arc<dyn Store>> {
    match location {
        Location::Redb(path) => {
            let store = self::redb::RedbStore::open(
                path.clone(),
                limits,
                // `cpm-iwf store stats|list` reads the file while the node runs.
                self::redb::RedbOptions {
                    share_with_readers: true,
                    ..self::redb::RedbOptions::default()
                },
            )
            .await?;
            Ok(Arc::new(store))
        }
        Location::Redis(url) => {
            let store =
                self::redis::RedisStore::open(url, limits, self::redis::RedisOptions::default())
                    .await?;
            Ok(Arc::new(store))
        }
    }
}

/// Checks a message against the size limits (before any write).
pub fn check_sizes(message: &StoredMessage, limits: &Limits) -> Result<()> {
    if message.payload.len() > limits.max_payload_bytes {
        return Err(StoreError::PayloadTooLarge {
            len: message.payload.len(),
            max: limits.max_payload_bytes,
        });
    }
    let max = limits.max_field_bytes;
    let required = [
        ("recipient", Some(&message.recipient)),
        ("sender", Some(&message.sender.aor)),
    ];
    for (field, value) in required {
        let len = value.map_or(0, Bytes::len);
        if len == 0 || len > max {
            return Err(StoreError::BadField { field, len, max });
        }
    }
    let optional = [
        ("Message-ID", &message.message_id),
        ("Conversation-ID", &message.conversation_id),
        ("Contribution-ID", &message.contribution_id),
        ("DateTime", &message.date_time),
        ("sender GRUU", &message.sender.gruu),
        ("sender instance", &message.sender.instance),
    ];
    for (field, value) in optional {
        if let Some(value) = value
            && (value.is_empty() || value.len() > max)
        {
            return Err(StoreError::BadField {
                field,
                len: value.len(),
                max,
            });
        }
    }
    Ok(())
}

/// What is stored now, for the quota check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// The recipient's messages.
    pub user_messages: u64,
    /// The recipient's bytes.
    pub user_bytes: u64,
    /// The whole store's bytes.
    pub total_bytes: u64,
}

/// Whether one more record of `record_len` bytes fits.
pub fn check_quota(usage: Usage, record_len: u64, limits: &Limits) -> Result<()> {
    if usage.user_messages >= limits.max_user_messages
        || usage.user_bytes.saturating_add(record_len) > limits.max_user_bytes
    {
        return Err(StoreError::UserQuota {
            messages: usage.user_messages,
            bytes: usage.user_bytes,
        });
    }
    if usage.total_bytes.saturating_add(record_len) > limits.max_total_bytes {
        return Err(StoreError::StoreFull {
            bytes: usage.total_bytes,
        });
    }
    Ok(())
}

/// Encodes an origin for storage.
pub fn encode_origin(origin: &MessageOrigin) -> Result<Vec<u8>> {
    serde_json::to_vec(origin).map_err(|_| StoreError::Corrupt("origin does not encode"))
}

/// Decodes a stored origin.
pub fn decode_origin(bytes: &[u8]) -> Result<MessageOrigin> {
    serde_json::from_slice(bytes).map_err(|_| StoreError::Corrupt("origin"))
}

/// The current wall-clock time in unix ms (for callers; nothing in the store reads a clock).
pub fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn message(recipient: &str, id: Option<&str>, payload: &str) -> StoredMessage {
        StoredMessage {
            recipient: Bytes::copy_from_slice(recipient.as_bytes()),
            to_side: Side::Simple,
            kind: Kind::Pager,
            payload: Bytes::copy_from_slice(payload.as_bytes()),
            message_id: id.map(|s| Bytes::copy_from_slice(s.as_bytes())),
            conversation_id: Some(Bytes::from_static(b"conv-1")),
            contribution_id: None,
            date_time: Some(Bytes::from_static(b"2026-11-25T13:00:00Z")),
            received_at_unix_ms: 1_000,
            expires_at_unix_ms: 2_000,
            sender: Device {
                aor: Bytes::from_static(b"sip:alice@cpm.example"),
                gruu: None,
                instance: Some(Bytes::from_static(b"urn:uuid:1")),
            },
        }
    }

    #[test]
    fn location_parse() {
        assert_eq!(
            Location::parse("redis://127.0.0.1:6379/0").ok(),
            Some(Location::Redis("redis://127.0.0.1:6379/0".into()))
        );
        assert_eq!(
            Location::parse("valkey://h:1").ok(),
            Some(Location::Redis("redis://h:1".into()))
        );
        assert_eq!(
            Location::parse("redb:/var/lib/x.redb").ok(),
            Some(Location::Redb("/var/lib/x.redb".into()))
        );
        assert_eq!(
            Location::parse("/var/lib/x.redb").ok(),
            Some(Location::Redb("/var/lib/x.redb".into()))
        );
        assert!(Location::parse("").is_err());
        assert!(Location::parse("redb:").is_err());
        assert!(Location::parse("http://x").is_err());
    }

    #[test]
    fn sizes_checked() {
        let limits = Limits {
            max_payload_bytes: 4,
            max_field_bytes: 30,
            ..Limits::default()
        };
        assert!(check_sizes(&message("sip:b@x", Some("m"), "abcd"), &limits).is_ok());
        assert!(matches!(
            check_sizes(&message("sip:b@x", Some("m"), "abcde"), &limits),
            Err(StoreError::PayloadTooLarge { len: 5, max: 4 })
        ));
        let long = "x".repeat(31);
        assert!(matches!(
            check_sizes(&message("sip:b@x", Some(&long), "a"), &limits),
            Err(StoreError::BadField {
                field: "Message-ID",
                ..
            })
        ));
        assert!(matches!(
            check_sizes(&message("", None, "a"), &limits),
            Err(StoreError::BadField {
                field: "recipient",
                len: 0,
                ..
            })
        ));
        assert!(matches!(
            check_sizes(&message("sip:b@x", Some(""), "a"), &limits),
            Err(StoreError::BadField { .. })
        ));
    }

    #[test]
    fn quota_checked() {
        let limits = Limits {
            max_user_messages: 2,
            max_user_bytes: 100,
            max_total_bytes: 1000,
            ..Limits::default()
        };
        let usage = |m, b, t| Usage {
            user_messages: m,
            user_bytes: b,
            total_bytes: t,
        };
        assert!(check_quota(usage(1, 50, 50), 50, &limits).is_ok());
        assert!(matches!(
            check_quota(usage(2, 50, 50), 1, &limits),
            Err(StoreError::UserQuota { messages: 2, .. })
        ));
        assert!(matches!(
            check_quota(usage(1, 60, 60), 41, &limits),
            Err(StoreError::UserQuota { .. })
        ));
        assert!(matches!(
            check_quota(usage(0, 0, 990), 11, &limits),
            Err(StoreError::StoreFull { .. })
        ));
    }

    #[test]
    fn statuses() {
        let quota = StoreError::UserQuota {
            messages: 1,
            bytes: 1,
        };
        assert_eq!(quota.sip_status(), 480);
        assert_eq!(quota.msrp_status(), 413);
        let big = StoreError::PayloadTooLarge { len: 2, max: 1 };
        assert_eq!(big.sip_status(), 513);
        assert_eq!(StoreError::Unavailable("x".into()).sip_status(), 503);
        assert_eq!(StoreError::StoreFull { bytes: 1 }.sip_status(), 503);
        assert_eq!(StoreError::Corrupt("x").sip_status(), 500);
    }

    #[test]
    fn origin_round_trip() {
        let origin = MessageOrigin {
            side: Side::Cpm,
            device: message("sip:b@x", None, "").sender,
            recipient: Bytes::from_static(b"sip:b@x"),
            conversation: None,
        };
        let bytes = encode_origin(&origin).unwrap();
        assert_eq!(decode_origin(&bytes).unwrap(), origin);
        assert!(decode_origin(b"{").is_err());
    }
}
