//! The node's own MSRP endpoint for chat sessions whose callee is not available (issue 7: "a
//! chat-session INVITE towards a user who is not available ... the node answers the INVITE
//! itself and stores the chat messages and isComposing/IMDN that follow").
//!
//! The B2BUA answers such an INVITE as if the callee had: its SDP answer names this endpoint
//! (`a=path`, `a=setup:passive`), so the ordinary back-to-back relay connects to it as the
//! callee's leg and translates every chunk for the callee's network as usual. Here each
//! message is reassembled from its chunks (RFC 4975 §5.1, bounded), kept in the store as the
//! pager MESSAGE that will deliver it (in the callee's network's form), and only then answered
//! 200 (durable before acknowledged). isComposing is answered and dropped (RFC 3994 §4: stale
//! later). The relay is unchanged: this is one more MSRP peer, on loopback.
//!
//! The same keeping serves a session whose leg dropped mid-session ([`SessionKeeper`], given
//! to the relay by `node::msrp::takeover`): the chunks queued for the dropped user come here
//! without a second TCP hop.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::Decoder;

use super::b2bua::{Clock, CoreEvent, StoreEvent};
use super::deferred::{self, MailboxSession};
use super::msrp::takeover::{Keep, KeepFuture};
use crate::correlate::Table;
use crate::store::{Store, StoreError};
use crate::translate::state::View;
use crate::wire::msrp::{Continuation, Frame, Limits, Message, Method, MsrpCodec, MsrpUri};

/// Most sessions answered on a callee's behalf at once.
const MAX_SESSIONS: usize = 10_000;
/// Most connections from the relay at once.
const MAX_CONNECTIONS: usize = 1_024;
/// Most messages being reassembled per connection.
const MAX_PARTIAL: usize = 16;
/// A connection silent this long is closed (the relay's own idle limit is longer).
const IDLE: Duration = Duration::from_secs(3_600);

/// The endpoint.
pub struct Mailbox {
    addr: SocketAddr,
    sessions: Sessions,
    shared: Arc<Shared>,
    /// The accept loop (it owns the connection tasks): stopped with the mailbox, so that the
    /// store it holds is released when the node stops.
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sessions by MSRP session-id, with when each was taken.
type Sessions = Arc<Mutex<HashMap<Bytes, (MailboxSession, Instant)>>>;

/// A session the relay never connected for is forgotten after this.
const UNUSED: Duration = Duration::from_secs(120);

struct Shared {
    store: Arc<dyn Store>,
    table: Arc<Table>,
    clock: Clock,
    events: mpsc::Sender<CoreEvent>,
    sessions: Sessions,
    max_payload: usize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Mailbox {
    /// Listens on loopback; messages go to `store`, their recipients to the core by `events`.
    pub async fn bind(
        store: Arc<dyn Store>,
        table: Arc<Table>,
        clock: Clock,
        events: mpsc::Sender<CoreEvent>,
        max_payload: usize,
    ) -> std::io::Result<Mailbox> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let sessions = Arc::new(Mutex::new(HashMap::new()));
        let shared = Arc::new(Shared {
            store,
            table,
            clock,
            events,
            sessions: sessions.clone(),
            max_payload,
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Mailbox {
            addr,
            sessions,
            shared,
            task,
        })
    }

    /// The endpoint's URI for session `session_id` (RFC 4975 §6).
    pub fn uri(&self, session_id: &Bytes) -> MsrpUri {
        MsrpUri {
            secure: false,
            userinfo: None,
            host: Bytes::from(self.addr.ip().to_string()),
            port: Some(self.addr.port()),
            session_id: Some(session_id.clone()),
            transport: Bytes::from_static(b"tcp"),
            params: Bytes::new(),
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What makes keepers for the users of dropped legs ([`Keeping::keeper`]).
    pub fn keeping(&self) -> Keeping {
        Keeping(self.shared.clone())
    }

    /// Takes session `session_id` for a callee; `false` when full. It is forgotten when the
    /// relay's connection for it closes (after the last message queued before a BYE was kept),
    /// or after [`UNUSED`] if the relay never connects.
    pub fn expect(&self, session_id: Bytes, session: MailboxSession) -> bool {
        let mut s = lock(&self.sessions);
        if s.len() >= MAX_SESSIONS {
            let now = Instant::now();
            s.retain(|_, (_, at)| now.duration_since(*at) < UNUSED);
            if s.len() >= MAX_SESSIONS {
                return false;
            }
        }
        s.insert(session_id, (session, Instant::now()));
        true
    }
}

/// Makes the keepers of dropped legs; shares the mailbox's store and event queue.
#[derive(Clone)]
pub struct Keeping(Arc<Shared>);

impl Keeping {
    /// What keeps the messages towards the user of a chat session's dropped leg
    /// (`node::msrp::takeover`) as the mailbox keeps a stood-in session's.
    pub fn keeper(&self, session: MailboxSession) -> SessionKeeper {
        SessionKeeper {
            shared: self.0.clone(),
            session,
            partial: Mutex::new(HashMap::new()),
            kept: Mutex::new(VecDeque::new()),
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Dropped (aborting every connection task) when this task is aborted.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                if connections.len() >= MAX_CONNECTIONS {
                    continue;
                }
                connections.spawn(serve(stream, shared.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One connection from the relay: SENDs in, responses out, one transaction at a time.
async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let mut seen = HashSet::new();
    serve_frames(stream, &shared, &mut seen).await;
    let mut s = lock(&shared.sessions);
    for sid in seen {
        s.remove(&sid);
    }
}

async fn serve_frames(mut stream: TcpStream, shared: &Shared, seen: &mut HashSet<Bytes>) {
    let mut codec = MsrpCodec::new(Limits::default());
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut out = BytesMut::new();
    let mut partial: HashMap<Bytes, BytesMut> = HashMap::new();

    // The relay stops reading when the session closes; what it already wrote is still kept.
    let mut can_write = true;
    loop {
        let frame = match codec.decode(&mut buf) {
            Ok(Some(f)) => f,
            Ok(None) => match tokio::time::timeout(IDLE, stream.read_buf(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => continue,
                _ => return,
            },
            // Cannot be framed any more: close (the relay ends the session).
            Err(_) => return,
        };
        let reply = match frame {
            Frame::Message(m) => on_message(shared, &mut partial, seen, &m).await,
            Frame::Rejected {
                transaction_id,
                error,
            } => {
                tracing::debug!(%error, "mailbox: bad MSRP message");
                let _ = transaction_id;
                None
            }
        };
        if let Some(r) = reply
            && can_write
        {
            out.clear();
            r.encode(&mut out);
            can_write = tokio::time::timeout(Duration::from_secs(5), stream.write_all(&out))
                .await
                .is_ok_and(|r| r.is_ok());
        }
    }
}

async fn on_message(
    shared: &Shared,
    partial: &mut HashMap<Bytes, BytesMut>,
    seen: &mut HashSet<Bytes>,
    m: &Message,
) -> Option<Message> {
    // Responses and REPORTs get no response (RFC 4975 §7.1.2).
    match m.method() {
        Some(Method::Send) => {}
        Some(Method::Report) | None => return None,
        Some(_) => return Message::response_to(m, 501, None).ok(),
    }
    let answer = |code: u16| Message::response_to(m, code, None).ok();
    let session_id = m
        .to_path()
        .ok()
        .and_then(|p| p.last().and_then(|u| u.session_id.clone()));
    let Some(sid) = session_id else {
        return answer(400);
    };
    let Some(session) = lock(&shared.sessions).get_mut(&sid).map(|(s, at)| {
        // In use: not forgotten as unused.
        *at = Instant::now();
        s.clone()
    }) else {
        // RFC 4975 §7.3.1: not a session here.
        return answer(481);
    };
    seen.insert(sid);
    if m.body.is_none() {
        // The bodiless SEND that opens the connection (§5.4).
        return answer(200);
    }
    let whole = match reassemble(partial, m, shared.max_payload) {
        Ok(whole) => whole,
        Err(code) => return answer(code),
    };
    answer(keep_whole(shared, &session, m, whole).await)
}

/// One chunk `m` of a kept session into `partial` (RFC 4975 §5.1, in arrival order, bounded):
/// the whole message once its last chunk is in, else the status to answer now (200 for a
/// part or an aborted message; 413 when too large, too many at once, or when its first byte
/// was never seen: a message half-sent elsewhere is refused whole, RFC 4975 §7.3.1).
pub fn reassemble(
    partial: &mut HashMap<Bytes, BytesMut>,
    m: &Message,
    max_payload: usize,
) -> Result<Bytes, u16> {
    let body = m.body.clone().unwrap_or_default();
    let id = m.message_id().cloned().unwrap_or_default();
    let continuing = partial.contains_key(&id);
    let start = m.byte_range().ok().flatten().map_or(1, |r| r.start);
    if !continuing && start != 1 && m.continuation != Continuation::Aborted {
        return Err(413);
    }
    match m.continuation {
        Continuation::Complete if !continuing => Ok(body),
        Continuation::Aborted => {
            partial.remove(&id);
            Err(200)
        }
        c => {
            if !continuing && partial.len() >= MAX_PARTIAL {
                return Err(413);
            }
            let buf = partial.entry(id.clone()).or_default();
            if buf.len() + body.len() > max_payload {
                partial.remove(&id);
                return Err(413);
            }
            buf.extend_from_slice(&body);
            if c == Continuation::More {
                return Err(200);
            }
            Ok(partial
                .remove(&id)
                .map(BytesMut::freeze)
                .unwrap_or_default())
        }
    }
}

/// Keep the whole message `whole` (of chunk `m`'s Content-Type) of `session` durably, and
/// where its notifications go; the MSRP status to answer: 200 only once it is durable.
async fn keep_whole(shared: &Shared, session: &MailboxSession, m: &Message, whole: Bytes) -> u16 {
    let unix_now = crate::store::unix_ms_now();
    let Some(stored) = to_keep(session, m, whole, unix_now) else {
        // isComposing, or nothing worth keeping: answered, not kept.
        return 200;
    };
    keep_stored(shared, stored, unix_now).await
}

/// The stored form of the whole message `whole` of chunk `m`; `None` for what is not kept
/// (isComposing, an empty body).
fn to_keep(
    session: &MailboxSession,
    m: &Message,
    whole: Bytes,
    unix_now: u64,
) -> Option<crate::store::StoredMessage> {
    let content_type = m.content_type().cloned().unwrap_or_default();
    deferred::session_message(session, &content_type, whole, unix_now)
}

/// Keep `stored` durably, and where its notifications go; the MSRP status to answer: 200 only
/// once it is durable.
async fn keep_stored(shared: &Shared, stored: crate::store::StoredMessage, unix_now: u64) -> u16 {
    let user = stored.recipient.clone();
    let origin = stored.message_id.clone().and_then(|id| {
        shared
            .table
            .view(shared.clock.now())
            .message(&id)
            .map(|o| (id, o))
    });
    let origin_until = stored
        .expires_at_unix_ms
        .saturating_add(stored.expires_at_unix_ms.saturating_sub(unix_now));
    let mut result: Result<(), StoreError> = shared.store.put(stored).await.map(|_| ());
    if result.is_ok()
        && let Some((id, o)) = origin
    {
        result = shared.store.put_origin(id, o, origin_until).await;
    }
    match result {
        Ok(()) => {
            let _ = shared
                .events
                .send(CoreEvent::Store(StoreEvent::Kept { user }))
                .await;
            crate::metrics::store_operation(
                crate::metrics::StoreOp::Put,
                crate::metrics::StoreResult::Ok,
            );
            200
        }
        Err(e) => {
            crate::metrics::store_operation(
                crate::metrics::StoreOp::Put,
                crate::metrics::StoreResult::Failed,
            );
            tracing::warn!(error = %e, "chat message for an unavailable user not stored");
            e.msrp_status()
        }
    }
}

/// [`Mailbox::keeper`]: the messages towards the user of a dropped leg, kept one at a time in
/// the order the relay gives them (its drain is one task), each imdn.Message-ID once.
pub struct SessionKeeper {
    shared: Arc<Shared>,
    session: MailboxSession,
    partial: Mutex<HashMap<Bytes, BytesMut>>,
    /// The imdn.Message-IDs (RFC 5438 §6.3) kept in this takeover, the last [`KEPT_IDS`]:
    /// a message handed over twice (written and unanswered, then sent again by its sender) is
    /// stored once.
    kept: Mutex<VecDeque<Bytes>>,
}

/// How many imdn.Message-IDs a takeover remembers to keep each message once.
const KEPT_IDS: usize = 1_024;

impl SessionKeeper {
    /// Whether a message with this imdn.Message-ID was kept already in this takeover.
    fn already_kept(&self, id: &Bytes) -> bool {
        lock(&self.kept).contains(id)
    }

    /// Remember a kept imdn.Message-ID (the oldest forgotten beyond [`KEPT_IDS`]).
    fn remember(&self, id: Bytes) {
        let mut kept = lock(&self.kept);
        if kept.len() >= KEPT_IDS {
            kept.pop_front();
        }
        kept.push_back(id);
    }
}

impl Keep for SessionKeeper {
    fn keep<'a>(&'a self, msg: &'a Message) -> KeepFuture<'a> {
        Box::pin(async move {
            let whole = {
                let mut partial = lock(&self.partial);
                let id = msg.message_id().cloned().unwrap_or_default();
                if msg.body.is_none() && !partial.contains_key(&id) {
                    // Nothing to keep (a keep-alive SEND, RFC 4975 §7.1.1).
                    return 200;
                }
                reassemble(&mut partial, msg, self.shared.max_payload)
            };
            let whole = match whole {
                Ok(whole) => whole,
                Err(code) => return code,
            };
            let unix_now = crate::store::unix_ms_now();
            let Some(stored) = to_keep(&self.session, msg, whole, unix_now) else {
                // isComposing, or nothing worth keeping: answered, not kept.
                return 200;
            };
            let id = stored.message_id.clone();
            if id.as_ref().is_some_and(|id| self.already_kept(id)) {
                // Kept already: once is enough (the delivery sends it once).
                tracing::debug!(?id, "takeover: message kept already");
                return 200;
            }
            let code = keep_stored(&self.shared, stored, unix_now).await;
            if code == 200 {
                crate::metrics::store_takeover_message();
                if let Some(id) = id {
                    self.remember(id);
                }
            }
            code
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::msrp::parse;

    fn chunk(id: &str, range: &str, end: char, body: &str) -> Message {
        let text = format!(
            "MSRP t0001 SEND\r\nTo-Path: msrp://127.0.0.1:9/a;tcp\r\nFrom-Path: msrp://127.0.0.1:9/b;tcp\r\n\
             Message-ID: msg-{id}\r\nByte-Range: {range}\r\nContent-Type: text/plain\r\n\r\n{body}\r\n-------t0001{end}\r\n"
        );
        parse(Bytes::from(text), &Limits::default()).expect("MSRP")
    }

    #[test]
    fn a_message_is_kept_whole_or_refused() {
        let mut partial = HashMap::new();
        // Whole in one chunk.
        assert_eq!(
            reassemble(&mut partial, &chunk("m1", "1-2/2", '$', "hi"), 1024),
            Ok(Bytes::from_static(b"hi"))
        );
        // In two chunks: the first is answered 200, the second completes it.
        assert_eq!(
            reassemble(&mut partial, &chunk("m2", "1-3/6", '+', "abc"), 1024),
            Err(200)
        );
        assert_eq!(
            reassemble(&mut partial, &chunk("m2", "4-6/6", '$', "def"), 1024),
            Ok(Bytes::from_static(b"abcdef"))
        );
        // The rest of a message whose beginning went elsewhere (half-sent when a leg
        // dropped): 413, never a 200 for a part that cannot be kept whole.
        assert_eq!(
            reassemble(&mut partial, &chunk("m3", "4-6/9", '+', "def"), 1024),
            Err(413)
        );
        assert_eq!(
            reassemble(&mut partial, &chunk("m3", "7-9/9", '$', "ghi"), 1024),
            Err(413)
        );
        // Aborted: forgotten.
        assert_eq!(
            reassemble(&mut partial, &chunk("m4", "1-3/6", '+', "abc"), 1024),
            Err(200)
        );
        assert_eq!(
            reassemble(&mut partial, &chunk("m4", "4-6/6", '#', "def"), 1024),
            Err(200)
        );
        assert!(partial.is_empty());
        // Too large.
        assert_eq!(
            reassemble(&mut partial, &chunk("m5", "1-3/6", '+', "abc"), 4),
            Err(200)
        );
        assert_eq!(
            reassemble(&mut partial, &chunk("m5", "4-6/6", '$', "def"), 4),
            Err(413)
        );
    }
}
