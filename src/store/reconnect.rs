//! A store opened in the background: a node whose Redis is down (or still loading its AOF)
//! when it starts serves anyway, reports itself not ready (`/readyz`), and answers what it
//! would store 503 (`StoreError::Unavailable`) until the store opens; the opening is retried
//! with backoff. Once open, calls go straight to the store (one atomic load each).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;

use super::{
    Limits, Location, MessageKey, Pending, Store, StoreError, StoreFuture, StoreReceipt, StoreStats,
};
use crate::translate::state::MessageOrigin;

/// First wait between two attempts to open; doubled each time up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// Longest wait between two attempts.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// See the module documentation.
pub struct Reconnecting {
    store: Arc<OnceLock<Arc<dyn Store>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Reconnecting {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Reconnecting {
    /// Starts opening the store at `location` in the background, now and then after each
    /// failure (a store that refuses for good, e.g. a Redis without `appendfsync always`, is
    /// retried too: the operator may fix it while the node runs, and each failure is logged).
    pub fn open(location: Location, limits: Limits) -> Reconnecting {
        let store: Arc<OnceLock<Arc<dyn Store>>> = Arc::new(OnceLock::new());
        let cell = store.clone();
        let task = tokio::spawn(async move {
            let mut wait = FIRST_RETRY;
            loop {
                match super::open(&location, limits).await {
                    Ok(s) => {
                        tracing::info!("store open");
                        let _ = cell.set(s);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "store not open yet");
                    }
                }
                tokio::time::sleep(wait).await;
                wait = wait.saturating_mul(2).min(MAX_RETRY);
            }
        });
        Reconnecting { store, task }
    }

    /// Whether the store is open.
    pub fn is_open(&self) -> bool {
        self.store.get().is_some()
    }

    fn get(&self) -> Result<Arc<dyn Store>, StoreError> {
        self.store
            .get()
            .cloned()
            .ok_or_else(|| StoreError::Unavailable("the store is not open yet".into()))
    }
}

/// `call` on the open store, or `Unavailable`.
macro_rules! forward {
    ($self:ident, |$s:ident| $call:expr) => {
        match $self.get() {
            Ok($s) => Box::pin(async move { $call.await }),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    };
}

impl Store for Reconnecting {
    fn put(&self, message: super::StoredMessage) -> StoreFuture<'_, StoreReceipt> {
        forward!(self, |s| s.put(message))
    }

    fn pending(&self, recipient: Bytes, after: u64, limit: usize) -> StoreFuture<'_, Vec<Pending>> {
        forward!(self, |s| s.pending(recipient, after, limit))
    }

    fn ack_delivered(&self, key: MessageKey) -> StoreFuture<'_, bool> {
        forward!(self, |s| s.ack_delivered(key))
    }

    fn take_expired(&self, now_unix_ms: u64, limit: usize) -> StoreFuture<'_, Vec<Pending>> {
        forward!(self, |s| s.take_expired(now_unix_ms, limit))
    }

    fn stats(&self, limit: usize) -> StoreFuture<'_, StoreStats> {
        forward!(self, |s| s.stats(limit))
    }

    fn users_with_pending(
        &self,
        after: Option<Bytes>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<Bytes>> {
        forward!(self, |s| s.users_with_pending(after, limit))
    }

    fn put_origin(
        &self,
        message_id: Bytes,
        origin: MessageOrigin,
        expires_at_unix_ms: u64,
    ) -> StoreFuture<'_, ()> {
        forward!(self, |s| s.put_origin(
            message_id,
            origin,
            expires_at_unix_ms
        ))
    }

    fn origin(
        &self,
        message_id: Bytes,
        now_unix_ms: u64,
    ) -> StoreFuture<'_, Option<MessageOrigin>> {
        forward!(self, |s| s.origin(message_id, now_unix_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unavailable_until_open_then_forwarded() {
        let dir = tempfile::tempdir().expect("dir");
        // A Redis nobody listens on: every call is Unavailable (a put: 503), never a hang.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let r = Reconnecting::open(
            Location::Redis(format!("redis://127.0.0.1:{port}/")),
            Limits::default(),
        );
        assert!(!r.is_open());
        let e = r.stats(1).await.expect_err("not open");
        assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
        assert_eq!(e.sip_status(), 503);
        // A redb file opens at once.
        let r = Reconnecting::open(Location::Redb(dir.path().join("s.redb")), Limits::default());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !r.is_open() {
            assert!(tokio::time::Instant::now() < deadline, "redb did not open");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(r.stats(1).await.expect("open").messages, 0);
    }
}
