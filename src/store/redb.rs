//! The embedded backend: one redb file (ACID, copy-on-write B-trees, crash safe: a commit with
//! `Durability::Immediate` is on disk when `commit` returns, and a crash before it leaves the
//! previous commit).
//!
//! Writes go to one writer thread through a bounded queue. The thread takes every request
//! waiting (up to [`RedbOptions::max_batch`]), applies them in one write transaction and commits
//! it once: group commit. Each caller is answered only after that commit returned, so no put is
//! acknowledged before it is durable; a request refused for its own reason (quota, size) is
//! refused before it writes anything, so it never spoils the others of its group.
//!
//! Tables:
//! - `messages`: (recipient, seq) -> record ([`super::codec`]): the queues, in order.
//! - `users`: recipient -> (messages, bytes): quotas and stats.
//! - `message_ids`: (recipient, Message-ID) -> seq: a retransmitted message is not stored twice.
//! - `expiry`: (expires_at, seq) -> recipient: what `take_expired` removes.
//! - `meta`: `next_seq`, `total_messages`, `total_bytes`.
//! - `origins`: Message-ID -> expires_at (u64 LE) + JSON [`MessageOrigin`];
//!   `origin_expiry`: (expires_at, Message-ID) -> ().

use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use ::redb::{
    ConcurrencyMode, Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    Table, TableDefinition, WriteTransaction,
};
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::codec::{decode_message, encode_message};
use super::{
    Limits, MessageKey, Pending, Result, Store, StoreError, StoreFuture, StoreReceipt, StoreStats,
    StoredMessage, Usage, UserStats, check_quota, check_sizes, decode_origin, encode_origin,
};
use crate::translate::state::MessageOrigin;

const MESSAGES: TableDefinition<(&[u8], u64), &[u8]> = TableDefinition::new("messages");
const USERS: TableDefinition<&[u8], (u64, u64)> = TableDefinition::new("users");
const IDS: TableDefinition<(&[u8], &[u8]), u64> = TableDefinition::new("message_ids");
const EXPIRY: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("expiry");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const ORIGINS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("origins");
const ORIGIN_EXPIRY: TableDefinition<(u64, &[u8]), ()> = TableDefinition::new("origin_expiry");

const NEXT_SEQ: &str = "next_seq";
const TOTAL_MESSAGES: &str = "total_messages";
const TOTAL_BYTES: &str = "total_bytes";

/// Options of the embedded store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedbOptions {
    /// redb's page cache.
    pub cache_bytes: usize,
    /// Most write requests queued for the writer (callers wait beyond it: back-pressure).
    pub queue: usize,
    /// Most requests committed together.
    pub max_batch: usize,
    /// Let other processes open the file read-only while the node runs (`cpm-iwf store
    /// stats`): redb's `ConcurrencyMode::SingleWriter`. Off: the node locks the file.
    pub share_with_readers: bool,
}

impl Default for RedbOptions {
    fn default() -> Self {
        RedbOptions {
            cache_bytes: 64 * 1024 * 1024,
            queue: 4096,
            max_batch: 256,
            share_with_readers: false,
        }
    }
}

/// A put as the writer needs it: the record is encoded by the caller, off the writer thread.
struct NewRecord {
    recipient: Bytes,
    message_id: Option<Bytes>,
    expires_at: u64,
    record: Vec<u8>,
}

enum Op {
    Put(NewRecord),
    Ack(MessageKey),
    TakeExpired(u64, usize),
    PutOrigin(Bytes, Vec<u8>, u64),
}

enum Done {
    Receipt(StoreReceipt),
    Acked(bool),
    Expired(Vec<Pending>),
    Unit,
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Done>>,
}

/// The redb store. Dropping it stops the writer thread after the group it is committing.
pub struct RedbStore {
    db: Arc<Database>,
    writer: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    limits: Limits,
}

impl RedbStore {
    /// Opens (or creates) the database file at `path` and starts its writer thread.
    pub async fn open(path: PathBuf, limits: Limits, options: RedbOptions) -> Result<RedbStore> {
        let db = tokio::task::spawn_blocking(move || open_db(&path, &options))
            .await
            .map_err(|e| StoreError::Unavailable(format!("open task: {e}")))??;
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let thread_db = Arc::clone(&db);
        let max_batch = options.max_batch.max(1);
        let thread = std::thread::Builder::new()
            .name("store-redb-writer".into())
            .spawn(move || writer_loop(&thread_db, rx, &limits, max_batch))
            .map_err(|e| StoreError::Unavailable(format!("writer thread: {e}")))?;
        Ok(RedbStore {
            db,
            writer: Some(tx),
            thread: Some(thread),
            limits,
        })
    }

    async fn write(&self, op: Op) -> Result<Done> {
        let writer = self
            .writer
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("store closed".into()))?;
        let (reply, answer) = oneshot::channel();
        writer
            .send(Request { op, reply })
            .await
            .map_err(|_| StoreError::Unavailable("writer stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("writer stopped".into()))?
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Unavailable(format!("read task: {e}")))?
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        // Closing the queue ends the writer's loop once it has answered what it holds; joining
        // it releases the file, so that the same path can be opened again at once.
        self.writer.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A read-only view of a redb store file, for `cpm-iwf store stats|list`: it never writes,
/// and it may be opened while the node runs when the node opened the file with
/// [`RedbOptions::share_with_readers`] (redb's `SingleWriter` mode; each read sees the node's
/// last commit). Synchronous: the command has nothing else to do meanwhile.
pub struct RedbReader {
    db: ::redb::ReadOnlyDatabase,
}

impl RedbReader {
    /// Opens the file at `path` read-only. Fails with [`StoreError::Redb`]
    /// (`DatabaseAlreadyOpen`) if a node holds it without sharing.
    pub fn open(path: &std::path::Path) -> Result<RedbReader> {
        let mut builder = Database::builder();
        builder.set_concurrency_mode(ConcurrencyMode::SingleWriter);
        let db = builder.open_read_only(path).map_err(redb_err)?;
        Ok(RedbReader { db })
    }

    /// As [`Store::stats`].
    pub fn stats(&self, limit: usize) -> Result<StoreStats> {
        read_stats(&self.db, limit)
    }

    /// As [`Store::pending`].
    pub fn pending(&self, recipient: Bytes, after: u64, limit: usize) -> Result<Vec<Pending>> {
        read_pending(&self.db, recipient, after, limit)
    }

    /// As [`Store::users_with_pending`].
    pub fn users_with_pending(&self, after: Option<Bytes>, limit: usize) -> Result<Vec<Bytes>> {
        read_users(&self.db, after, limit)
    }
}

fn redb_err<E: Into<::redb::Error>>(e: E) -> StoreError {
    StoreError::Redb(e.into())
}

fn open_db(path: &std::path::Path, options: &RedbOptions) -> Result<Database> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
    }
    let mut builder = Database::builder();
    builder.set_cache_size(options.cache_bytes);
    if options.share_with_readers {
        builder.set_concurrency_mode(ConcurrencyMode::SingleWriter);
    }
    let db = builder.create(path).map_err(redb_err)?;
    // Create every table now, so that readers never meet a missing one.
    let txn = db.begin_write().map_err(redb_err)?;
    {
        let _ = Tables::open(&txn)?;
    }
    txn.commit().map_err(redb_err)?;
    Ok(db)
}

struct Tables<'t> {
    messages: Table<'t, (&'static [u8], u64), &'static [u8]>,
    users: Table<'t, &'static [u8], (u64, u64)>,
    ids: Table<'t, (&'static [u8], &'static [u8]), u64>,
    expiry: Table<'t, (u64, u64), &'static [u8]>,
    meta: Table<'t, &'static str, u64>,
    origins: Table<'t, &'static [u8], &'static [u8]>,
    origin_expiry: Table<'t, (u64, &'static [u8]), ()>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Tables<'t>> {
        Ok(Tables {
            messages: txn.open_table(MESSAGES).map_err(redb_err)?,
            users: txn.open_table(USERS).map_err(redb_err)?,
            ids: txn.open_table(IDS).map_err(redb_err)?,
            expiry: txn.open_table(EXPIRY).map_err(redb_err)?,
            meta: txn.open_table(META).map_err(redb_err)?,
            origins: txn.open_table(ORIGINS).map_err(redb_err)?,
            origin_expiry: txn.open_table(ORIGIN_EXPIRY).map_err(redb_err)?,
        })
    }

    fn meta(&self, key: &str) -> Result<u64> {
        Ok(self
            .meta
            .get(key)
            .map_err(redb_err)?
            .map_or(0, |g| g.value()))
    }

    fn put(&mut self, m: &NewRecord, limits: &Limits) -> Result<StoreReceipt> {
        let rec = m.recipient.as_ref();
        if let Some(id) = &m.message_id
            && let Some(seq) = self.ids.get((rec, id.as_ref())).map_err(redb_err)?
        {
            return Ok(StoreReceipt {
                key: MessageKey {
                    recipient: m.recipient.clone(),
                    seq: seq.value(),
                },
                duplicate: true,
            });
        }
        let (count, bytes) = self
            .users
            .get(rec)
            .map_err(redb_err)?
            .map_or((0, 0), |g| g.value());
        let total_bytes = self.meta(TOTAL_BYTES)?;
        let record = &m.record;
        let len = record.len() as u64;
        check_quota(
            Usage {
                user_messages: count,
                user_bytes: bytes,
                total_bytes,
            },
            len,
            limits,
        )?;
        let seq = self.meta(NEXT_SEQ)?.max(1);
        let total_messages = self.meta(TOTAL_MESSAGES)?;
        let ins = |e| redb_err(e);
        self.meta.insert(NEXT_SEQ, seq + 1).map_err(ins)?;
        self.meta
            .insert(TOTAL_MESSAGES, total_messages + 1)
            .map_err(ins)?;
        self.meta
            .insert(TOTAL_BYTES, total_bytes + len)
            .map_err(ins)?;
        self.messages
            .insert((rec, seq), record.as_slice())
            .map_err(ins)?;
        self.users
            .insert(rec, (count + 1, bytes + len))
            .map_err(ins)?;
        if let Some(id) = &m.message_id {
            self.ids.insert((rec, id.as_ref()), seq).map_err(ins)?;
        }
        self.expiry.insert((m.expires_at, seq), rec).map_err(ins)?;
        Ok(StoreReceipt {
            key: MessageKey {
                recipient: m.recipient.clone(),
                seq,
            },
            duplicate: false,
        })
    }

    /// Removes message (rec, seq) and its index entries; the message, if it was there.
    fn remove(&mut self, rec: &[u8], seq: u64) -> Result<Option<(Bytes, Result<StoredMessage>)>> {
        let record = match self.messages.remove((rec, seq)).map_err(redb_err)? {
            Some(g) => Bytes::copy_from_slice(g.value()),
            None => return Ok(None),
        };
        let len = record.len() as u64;
        let decoded = decode_message(record.clone());
        if let Ok(m) = &decoded {
            if let Some(id) = &m.message_id {
                let same = self
                    .ids
                    .get((rec, id.as_ref()))
                    .map_err(redb_err)?
                    .is_some_and(|g| g.value() == seq);
                if same {
                    self.ids.remove((rec, id.as_ref())).map_err(redb_err)?;
                }
            }
            self.expiry
                .remove((m.expires_at_unix_ms, seq))
                .map_err(redb_err)?;
        }
        let (count, bytes) = self
            .users
            .get(rec)
            .map_err(redb_err)?
            .map_or((0, 0), |g| g.value());
        if count <= 1 {
            self.users.remove(rec).map_err(redb_err)?;
        } else {
            self.users
                .insert(rec, (count - 1, bytes.saturating_sub(len)))
                .map_err(redb_err)?;
        }
        let total_messages = self.meta(TOTAL_MESSAGES)?;
        let total_bytes = self.meta(TOTAL_BYTES)?;
        self.meta
            .insert(TOTAL_MESSAGES, total_messages.saturating_sub(1))
            .map_err(redb_err)?;
        self.meta
            .insert(TOTAL_BYTES, total_bytes.saturating_sub(len))
            .map_err(redb_err)?;
        Ok(Some((record, decoded)))
    }

    fn take_expired(&mut self, now: u64, limit: usize) -> Result<Vec<Pending>> {
        let bound = now.saturating_add(1);
        let mut due = Vec::new();
        for entry in self
            .expiry
            .range(..(bound, 0))
            .map_err(redb_err)?
            .take(limit)
        {
            let (k, v) = entry.map_err(redb_err)?;
            due.push((k.value(), Bytes::copy_from_slice(v.value())));
        }
        let mut out = Vec::with_capacity(due.len());
        for ((expires_at, seq), rec) in due {
            match self.remove(&rec, seq)? {
                Some((_, Ok(message))) => out.push(Pending {
                    key: MessageKey {
                        recipient: rec,
                        seq,
                    },
                    message,
                }),
                Some((_, Err(e))) => {
                    tracing::warn!(seq, error = %e, "store: dropped an expired record that does not decode");
                    self.expiry.remove((expires_at, seq)).map_err(redb_err)?;
                }
                // An index entry without its message: drop it.
                None => {
                    self.expiry.remove((expires_at, seq)).map_err(redb_err)?;
                }
            }
        }
        let mut gone = Vec::new();
        for entry in self
            .origin_expiry
            .range(..(bound, &[][..]))
            .map_err(redb_err)?
            .take(limit)
        {
            let (k, _) = entry.map_err(redb_err)?;
            let (at, id) = k.value();
            gone.push((at, id.to_vec()));
        }
        for (at, id) in gone {
            self.origin_expiry
                .remove((at, id.as_slice()))
                .map_err(redb_err)?;
            self.origins.remove(id.as_slice()).map_err(redb_err)?;
        }
        Ok(out)
    }

    fn put_origin(&mut self, id: &[u8], json: &[u8], expires_at: u64) -> Result<()> {
        let old = self
            .origins
            .get(id)
            .map_err(redb_err)?
            .and_then(|g| expiry_prefix(g.value()));
        if let Some(at) = old {
            self.origin_expiry.remove((at, id)).map_err(redb_err)?;
        }
        let mut value = Vec::with_capacity(8 + json.len());
        value.extend_from_slice(&expires_at.to_le_bytes());
        value.extend_from_slice(json);
        self.origins
            .insert(id, value.as_slice())
            .map_err(redb_err)?;
        self.origin_expiry
            .insert((expires_at, id), ())
            .map_err(redb_err)?;
        Ok(())
    }
}

fn expiry_prefix(value: &[u8]) -> Option<u64> {
    let head: [u8; 8] = value.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(head))
}

fn writer_loop(db: &Database, mut rx: mpsc::Receiver<Request>, limits: &Limits, max_batch: usize) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = Vec::with_capacity(max_batch.min(64));
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        run_batch(db, batch, limits);
    }
}

/// Applies a group of requests in one transaction and answers each after the commit.
fn run_batch(db: &Database, batch: Vec<Request>, limits: &Limits) {
    let mut answers: Vec<Result<Done>> = Vec::with_capacity(batch.len());
    let outcome = (|| -> Result<()> {
        let mut txn = db.begin_write().map_err(redb_err)?;
        // The default, said explicitly: a put is answered only after an fsync'd commit.
        txn.set_durability(Durability::Immediate)
            .map_err(|e| StoreError::Unavailable(format!("durability: {e}")))?;
        {
            let mut t = Tables::open(&txn)?;
            for request in &batch {
                let answer = match &request.op {
                    Op::Put(m) => t.put(m, limits).map(Done::Receipt),
                    Op::Ack(key) => t
                        .remove(&key.recipient, key.seq)
                        .map(|r| Done::Acked(r.is_some())),
                    Op::TakeExpired(now, limit) => t.take_expired(*now, *limit).map(Done::Expired),
                    Op::PutOrigin(id, json, at) => t.put_origin(id, json, *at).map(|()| Done::Unit),
                };
                // A database error leaves the transaction in doubt: give up the whole group
                // (dropping `txn` aborts it). A refusal wrote nothing: answer it, go on.
                if let Err(StoreError::Redb(e)) = answer {
                    return Err(StoreError::Redb(e));
                }
                answers.push(answer);
            }
        }
        txn.commit().map_err(redb_err)
    })();
    match outcome {
        Ok(()) => {
            for (request, answer) in batch.into_iter().zip(answers) {
                let _ = request.reply.send(answer);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, requests = batch.len(), "store: write transaction failed");
            let text = e.to_string();
            for request in batch {
                let _ = request.reply.send(Err(StoreError::Unavailable(format!(
                    "commit failed: {text}"
                ))));
            }
        }
    }
}

fn unexpected() -> StoreError {
    StoreError::Unavailable("writer answered another request kind".into())
}

fn read_pending(
    db: &impl ReadableDatabase,
    recipient: Bytes,
    after: u64,
    limit: usize,
) -> Result<Vec<Pending>> {
    let txn = db.begin_read().map_err(redb_err)?;
    let messages = txn.open_table(MESSAGES).map_err(redb_err)?;
    let rec = recipient.as_ref();
    let mut out = Vec::new();
    let from = after.saturating_add(1);
    for entry in messages
        .range((rec, from)..=(rec, u64::MAX))
        .map_err(redb_err)?
        .take(limit)
    {
        let (k, v) = entry.map_err(redb_err)?;
        let seq = k.value().1;
        let message = decode_message(Bytes::copy_from_slice(v.value()))?;
        out.push(Pending {
            key: MessageKey {
                recipient: recipient.clone(),
                seq,
            },
            message,
        });
    }
    Ok(out)
}

fn read_stats(db: &impl ReadableDatabase, limit: usize) -> Result<StoreStats> {
    let txn = db.begin_read().map_err(redb_err)?;
    let meta = txn.open_table(META).map_err(redb_err)?;
    let users = txn.open_table(USERS).map_err(redb_err)?;
    let messages = txn.open_table(MESSAGES).map_err(redb_err)?;
    let get =
        |k: &str| -> Result<u64> { Ok(meta.get(k).map_err(redb_err)?.map_or(0, |g| g.value())) };
    let mut stats = StoreStats {
        messages: get(TOTAL_MESSAGES)?,
        bytes: get(TOTAL_BYTES)?,
        users: users.len().map_err(redb_err)?,
        ..StoreStats::default()
    };
    for entry in users.iter().map_err(redb_err)?.take(limit) {
        let (k, v) = entry.map_err(redb_err)?;
        let rec = k.value();
        let (count, bytes) = v.value();
        let oldest = match messages
            .range((rec, 0)..=(rec, u64::MAX))
            .map_err(redb_err)?
            .next()
        {
            Some(first) => {
                let (_, v) = first.map_err(redb_err)?;
                Some(decode_message(Bytes::copy_from_slice(v.value()))?.received_at_unix_ms)
            }
            None => None,
        };
        if let Some(at) = oldest {
            stats.oldest_received_unix_ms =
                Some(stats.oldest_received_unix_ms.map_or(at, |o| o.min(at)));
        }
        stats.per_user.push(UserStats {
            recipient: Bytes::copy_from_slice(rec),
            messages: count,
            bytes,
            oldest_received_unix_ms: oldest,
        });
    }
    Ok(stats)
}

fn read_users(
    db: &impl ReadableDatabase,
    after: Option<Bytes>,
    limit: usize,
) -> Result<Vec<Bytes>> {
    let txn = db.begin_read().map_err(redb_err)?;
    let users = txn.open_table(USERS).map_err(redb_err)?;
    let lower = match &after {
        Some(a) => Bound::Excluded(a.as_ref()),
        None => Bound::Unbounded,
    };
    let mut out = Vec::new();
    for entry in users
        .range::<&[u8]>((lower, Bound::Unbounded))
        .map_err(redb_err)?
        .take(limit)
    {
        let (k, _) = entry.map_err(redb_err)?;
        out.push(Bytes::copy_from_slice(k.value()));
    }
    Ok(out)
}

fn read_origin(
    db: &impl ReadableDatabase,
    message_id: Bytes,
    now_unix_ms: u64,
) -> Result<Option<MessageOrigin>> {
    let txn = db.begin_read().map_err(redb_err)?;
    let origins = txn.open_table(ORIGINS).map_err(redb_err)?;
    let Some(value) = origins.get(message_id.as_ref()).map_err(redb_err)? else {
        return Ok(None);
    };
    let value = value.value();
    let at = expiry_prefix(value).ok_or(StoreError::Corrupt("origin"))?;
    if at < now_unix_ms {
        return Ok(None);
    }
    decode_origin(value.get(8..).unwrap_or_default()).map(Some)
}

impl Store for RedbStore {
    fn put(&self, message: StoredMessage) -> StoreFuture<'_, StoreReceipt> {
        Box::pin(async move {
            // Refuse what is too large before it takes a place in the writer's queue.
            check_sizes(&message, &self.limits)?;
            let record = encode_message(&message);
            let new = NewRecord {
                recipient: message.recipient,
                message_id: message.message_id,
                expires_at: message.expires_at_unix_ms,
                record,
            };
            match self.write(Op::Put(new)).await? {
                Done::Receipt(r) => Ok(r),
                _ => Err(unexpected()),
            }
        })
    }

    fn pending(&self, recipient: Bytes, after: u64, limit: usize) -> StoreFuture<'_, Vec<Pending>> {
        Box::pin(self.read(move |db| read_pending(db, recipient, after, limit)))
    }

    fn ack_delivered(&self, key: MessageKey) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            match self.write(Op::Ack(key)).await? {
                Done::Acked(b) => Ok(b),
                _ => Err(unexpected()),
            }
        })
    }

    fn take_expired(&self, now_unix_ms: u64, limit: usize) -> StoreFuture<'_, Vec<Pending>> {
        Box::pin(async move {
            match self.write(Op::TakeExpired(now_unix_ms, limit)).await? {
                Done::Expired(v) => Ok(v),
                _ => Err(unexpected()),
            }
        })
    }

    fn stats(&self, limit: usize) -> StoreFuture<'_, StoreStats> {
        Box::pin(self.read(move |db| read_stats(db, limit)))
    }

    fn users_with_pending(
        &self,
        after: Option<Bytes>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<Bytes>> {
        Box::pin(self.read(move |db| read_users(db, after, limit)))
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
            match self
                .write(Op::PutOrigin(message_id, json, expires_at_unix_ms))
                .await?
            {
                Done::Unit => Ok(()),
                _ => Err(unexpected()),
            }
        })
    }

    fn origin(
        &self,
        message_id: Bytes,
        now_unix_ms: u64,
    ) -> StoreFuture<'_, Option<MessageOrigin>> {
        Box::pin(self.read(move |db| read_origin(db, message_id, now_unix_ms)))
    }
}
