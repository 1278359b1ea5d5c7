//! The back-to-back MSRP relay (RFC 4975): the node is the MSRP endpoint of each leg of a chat
//! session and forwards translated chunks between them, as they arrive (never reassembled).
//!
//! The B2BUA core drives it:
//! 1. [`MsrpRelay::bind`] the two listeners (one per side) and keep the [`RelayEvent`]
//!    receiver;
//! 2. for each chat session, [`MsrpRelay::new_session_id`] and [`MsrpRelay::local_uri`] per
//!    leg give the `a=path` the node writes into that leg's SDP;
//! 3. once both SDP answers are known, [`MsrpRelay::open`] with a [`SessionSpec`]: per leg the
//!    peer's `a=path`, who opens the connection ([`Setup`], RFC 6135 `a=setup`) and whether
//!    `a=msrp-cema` (RFC 6714) was negotiated, plus the session's [`ChunkTranslator`];
//! 4. on [`RelayEvent::SessionEnded`] send BYE on both dialogs; on a BYE, [`MsrpRelay::close`].
//!
//! Per leg: a reader task (decode with [`MsrpCodec`], decide with the pure functions of
//! [`decide`], queue) and a writer task (a bounded queue, in messages and in bytes, drained to
//! the socket). A reader waits when the other leg's queue is full, so a slow receiver slows its
//! sender through TCP and memory never grows. Every wait on a peer has a deadline: connect,
//! first request, a half-received message and a blocked write (stall), silence (idle), a
//! response (transaction timeout, RFC 4975 §7.1.1).

pub mod decide;
pub mod link;
pub mod takeover;

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use futures_util::future::OptionFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc, oneshot};
use tokio::time::{Instant, sleep, sleep_until, timeout, timeout_at};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::translate::state::Side;
use crate::wire::msrp::{
    Frame, Limits, Message, Method, MsrpCodec, MsrpUri, StartLine, UriList, write_uri_list,
};

use decide::{Pending, PendingKind, RequestAction, ResponseOutcome};
use link::Wr;

/// The translation of one session's chunks, provided by the B2BUA (it implements it with
/// `translate::chat::chat_send` / `chat_report` and the session's two `ChatLeg`s, and applies
/// the table changes itself).
pub trait ChunkTranslator: Send + Sync {
    /// The SEND to queue on the other leg for a SEND received from `from`'s peer, or the
    /// status code (and comment) to answer it with.
    fn send(&self, from: Side, msg: &Message) -> Result<Message, (u16, &'static str)>;
    /// The REPORT to queue on the other leg for a REPORT received from `from`'s peer; `None`
    /// drops it (the session is no longer known).
    fn report(&self, from: Side, msg: &Message) -> Option<Message>;
    /// [`Self::send`] for a SEND whose To-Path the relay has read already (the codec checked
    /// every URI of it, RFC 4975 §9): it ends in the node's URI on `from`'s leg, whose
    /// session-id is `session_id`. By default the same as [`Self::send`].
    fn send_to(
        &self,
        from: Side,
        session_id: Option<&Bytes>,
        msg: &Message,
    ) -> Result<Message, (u16, &'static str)> {
        let _ = session_id;
        self.send(from, msg)
    }
    /// [`Self::report`] for a REPORT whose To-Path the relay has read already (as
    /// [`Self::send_to`]).
    fn report_to(&self, from: Side, session_id: Option<&Bytes>, msg: &Message) -> Option<Message> {
        let _ = session_id;
        self.report(from, msg)
    }
    /// The leg of `side` dropped mid-session ([`takeover`]): what keeps the messages towards
    /// its user from now on, or `None` to end the session. Called at most once per leg; the
    /// B2BUA ends that leg's dialog (issue 7).
    fn on_drop(&self, side: Side, reason: &EndReason) -> Option<Arc<dyn takeover::Keep>> {
        let _ = (side, reason);
        None
    }
}

/// Who opens the TCP connection of a leg (RFC 6135 `a=setup`, RFC 4975 §5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// The node connects to the first URI of the peer's path and sends a bodiless SEND.
    Active,
    /// The node waits for the peer on the side's listener.
    Passive,
}

/// One leg of a session.
#[derive(Debug, Clone)]
pub struct LegSpec {
    /// Which network the leg is in (which listener a passive peer connects to).
    pub side: Side,
    /// The session-id of the node's URI on this leg ([`MsrpRelay::local_uri`]).
    pub local_session_id: Bytes,
    /// The peer's `a=path`, first hop first; its last URI is the peer's own. An active leg
    /// connects to the first URI: with `a=msrp-cema` the B2BUA puts first a URI built from
    /// the SDP `c=` address and `m=` port (RFC 6714 §4.2).
    pub remote_path: Vec<MsrpUri>,
    /// Who connects.
    pub setup: Setup,
    /// `a=msrp-cema` negotiated (RFC 6714): sessions matched by session-id only.
    pub cema: bool,
}

/// A session to relay: one leg per side.
#[derive(Clone)]
pub struct SessionSpec {
    /// The B2BUA's id for it (echoed in [`RelayEvent`]s).
    pub id: u64,
    /// The CPM leg and the SIMPLE leg, in either order.
    pub legs: [LegSpec; 2],
    /// The session's chunk translation.
    pub translator: Arc<dyn ChunkTranslator>,
}

/// Bounds and timeouts of the relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Codec limits (chunk size, header sizes). Default: [`Limits::default`] (1 MiB chunks).
    pub limits: Limits,
    /// Most sessions at once. Default 100 000 (the config's `max_sessions`).
    pub max_sessions: usize,
    /// Most passive legs waiting for their peer. Default 10 000.
    pub max_pending_passive: usize,
    /// Most accepted connections that have not yet named their session. Default 1 024.
    pub max_unbound: usize,
    /// How long a passive leg waits for its peer, and an active leg for its TCP connect.
    /// Default 30 s.
    pub connect_timeout: Duration,
    /// How long an accepted connection may take to send its first request. Default 10 s.
    pub first_request_timeout: Duration,
    /// How long a peer may take to finish a message it started, and how long a write to a
    /// peer that does not read may block, before the leg is closed. Default 30 s.
    pub stall_timeout: Duration,
    /// How long a connection may stay silent. Default 3 600 s (chat sessions idle long).
    pub idle_timeout: Duration,
    /// How long the node waits for the response to a SEND it forwarded before it counts it
    /// as 408 (RFC 4975 §7.1.1: 30 s). Default 30 s.
    pub transaction_timeout: Duration,
    /// Messages queued towards one connection. Default 32. Also the most SENDs written to
    /// one connection and held until their 200 ([`decide::Outstanding::hold`]).
    pub queue_depth: usize,
    /// Bytes queued towards one connection (a chunk counts its encoded size, capped at this).
    /// Default 4 MiB. Also the most bytes of SENDs held until their 200.
    pub queue_bytes: usize,
    /// Forwarded requests awaiting a response, per leg; the oldest is dropped (as timed out)
    /// beyond it. Default 1 024.
    pub max_outstanding: usize,
    /// Capacity of the [`RelayEvent`] channel. Default 1 024.
    pub event_queue: usize,
    /// An active leg reuses the node's connection to the same host:port ([`link`]). Default
    /// off.
    pub share_connections: bool,
    /// Most sessions on one connection ([`link`]). Default 1 000.
    pub max_sessions_per_connection: usize,
    /// How long a shared connection with no session stays open. Default 30 s.
    pub connection_idle: Duration,
    /// How long a shared connection's reader waits for room in a session's queue before it
    /// answers 413 ([`link`]). Default 500 ms.
    pub share_wait: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            limits: Limits::default(),
            max_sessions: 100_000,
            max_pending_passive: 10_000,
            max_unbound: 1_024,
            connect_timeout: Duration::from_secs(30),
            first_request_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(3_600),
            transaction_timeout: Duration::from_secs(30),
            queue_depth: 32,
            queue_bytes: 4 * 1024 * 1024,
            max_outstanding: 1_024,
            event_queue: 1_024,
            share_connections: false,
            max_sessions_per_connection: 1_000,
            connection_idle: Duration::from_secs(30),
            share_wait: Duration::from_millis(500),
        }
    }
}

impl RelayConfig {
    /// The defaults with the configuration's limits: chunk size, sessions, queue depth.
    pub fn from_config(c: &Config) -> Self {
        let d = RelayConfig::default();
        RelayConfig {
            limits: Limits {
                max_chunk_size: c.limits.msrp_max_chunk,
                ..Limits::default()
            },
            max_sessions: c.limits.max_sessions,
            queue_depth: c.limits.queue_depth.clamp(1, 1_024),
            stall_timeout: Duration::from_millis(c.timers.msrp_stall_ms),
            connect_timeout: Duration::from_millis(c.timers.msrp_connect_ms),
            share_connections: c.msrp.share_connections,
            max_sessions_per_connection: c.msrp.max_sessions_per_connection.max(1),
            connection_idle: Duration::from_millis(c.msrp.connection_idle_ms),
            share_wait: Duration::from_millis(c.msrp.share_wait_ms.max(1)),
            ..d
        }
    }
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndReason {
    /// The peer closed its connection.
    #[error("the peer closed the connection")]
    PeerClosed,
    /// The stream could not be framed any more (RFC 4975 §9 start line, truncation).
    #[error("unrecoverable framing error: {0}")]
    Framing(String),
    /// A socket error.
    #[error("transport: {0}")]
    Io(String),
    /// A message half-received, or a write blocked, for the stall timeout.
    #[error("peer stalled")]
    Stalled,
    /// Nothing received for the idle timeout.
    #[error("idle timeout")]
    Idle,
    /// The passive leg's peer never connected, or the active leg's connect timed out.
    #[error("the peer did not connect in time")]
    ConnectTimeout,
    /// The active leg's connect failed.
    #[error("connect failed: {0}")]
    ConnectFailed(String),
    /// The peer refused the active leg's first SEND (RFC 4975 §5.4), or did not answer it
    /// within the transaction timeout (408).
    #[error("the peer answered the first SEND with {0}")]
    BindRefused(u16),
}

/// What the relay tells the B2BUA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayEvent {
    /// A leg's connection is established and bound to its session.
    LegConnected {
        /// The session.
        id: u64,
        /// The leg.
        side: Side,
    },
    /// The session is over: both connections are closed (send BYE on both dialogs).
    SessionEnded {
        /// The session.
        id: u64,
        /// The leg whose connection failed.
        side: Side,
        /// Why.
        reason: EndReason,
    },
}

/// Why [`MsrpRelay::open`] refused a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// `max_sessions` reached.
    #[error("too many MSRP sessions")]
    TooManySessions,
    /// `max_pending_passive` reached.
    #[error("too many passive MSRP legs waiting")]
    TooManyPending,
    /// The id is in use.
    #[error("session {0} exists")]
    DuplicateId(u64),
    /// The legs are not one per side.
    #[error("a session needs one CPM leg and one SIMPLE leg")]
    Sides,
    /// A local session-id is in use or not RFC 4975 §9 `session-id` text.
    #[error("local session-id unusable: {0}")]
    LocalSessionId(String),
    /// A peer path is empty, or an active leg's first URI has no port.
    #[error("peer path unusable: {0}")]
    RemotePath(&'static str),
}

/// The relay. Dropping it stops the listeners and every session.
pub struct MsrpRelay {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: RelayConfig,
    cpm_addr: SocketAddr,
    simple_addr: SocketAddr,
    /// The host part of the node's URIs on each side, shared by every session's URIs.
    cpm_host: Bytes,
    simple_host: Bytes,
    sessions: Mutex<HashMap<u64, Arc<Session>>>,
    passive: Mutex<HashMap<(Side, Bytes), Arc<Session>>>,
    events: mpsc::Sender<RelayEvent>,
    tids: Tids,
    unbound: Arc<Semaphore>,
    shutdown: CancellationToken,
    /// The node's reusable outbound connections and dials in progress ([`link`]).
    dials: link::Dials,
}

struct Session {
    id: u64,
    cpm: Leg,
    simple: Leg,
    translator: Arc<dyn ChunkTranslator>,
    /// Set once the session is over (a BYE, a failed leg, the relay stopping). A flag, not a
    /// `CancellationToken` (~112 B of tree node per session, issue 9): its waiters wait on
    /// the legs' `wake`, which [`Session::stop`] pokes.
    stopped: Flag,
    ended: AtomicBool,
}

impl Session {
    fn leg(&self, side: Side) -> &Leg {
        match side {
            Side::Cpm => &self.cpm,
            Side::Simple => &self.simple,
        }
    }

    /// The session is over: every task of both legs stops waiting.
    fn stop(&self) {
        self.stopped.set();
        self.cpm.wake.notify_waiters();
        self.simple.wake.notify_waiters();
    }

    fn is_stopped(&self) -> bool {
        self.stopped.is_set()
    }

    /// Once the session is over (at once when it is already).
    async fn stopped(&self) {
        self.cpm.until(|| self.is_stopped()).await;
    }
}

struct Leg {
    /// The session-id of the node's URI on this leg; the URI itself is built when needed
    /// ([`Inner::local_uri`]: a static host, this id), not kept (~170 B per leg, issue 9).
    local_sid: Bytes,
    /// The peer's `a=path` in its wire form (URIs separated by spaces): parsed only when a
    /// connection is set up or a request is unreadable ([`Leg::expected`]), so a held leg
    /// keeps tens of bytes here, not a parsed `MsrpUri` of ~170 bytes per hop (issue 9).
    expected: Bytes,
    setup: Setup,
    cema: bool,
    /// What the node sends on this leg, waiting for its writer.
    queue: Queue,
    outstanding: Mutex<decide::Outstanding>,
    /// Poked (`notify_waiters`) when the session stops, when the leg drops, and when
    /// `outstanding` gets its first entry (so that this leg's reader starts the transaction
    /// timer, RFC 4975 §7.1.1, even while its peer is silent). One `Notify` for the three:
    /// a held leg's reader waits on one `Notified`, not three futures (issue 9). A waiter
    /// enables its `Notified` before it looks at what it waits for ([`Leg::until`]).
    wake: Notify,
    bound: AtomicBool,
    /// Set when the leg dropped and was taken over ([`takeover`]): its reader stops, its
    /// writer hands its queue to the keeper.
    dropped: Flag,
    /// Whether a task of the leg is deciding its takeover.
    taking: AtomicBool,
    /// The keeper of a taken-over leg.
    kept: OnceLock<Arc<dyn takeover::Keep>>,
}

impl Leg {
    /// Wait until `done()` holds, checked whenever the leg's `wake` is poked.
    async fn until(&self, done: impl Fn() -> bool) {
        loop {
            let poked = self.wake.notified();
            tokio::pin!(poked);
            // Registered before the check: a poke between the two still wakes it.
            poked.as_mut().enable();
            if done() {
                return;
            }
            poked.await;
        }
    }

    /// The leg dropped and its keeper is set ([`takeover`]): its tasks stop using its peer.
    fn set_dropped(&self) {
        self.dropped.set();
        self.wake.notify_waiters();
    }

    fn is_dropped(&self) -> bool {
        self.dropped.is_set()
    }

    /// The peer's `a=path`, first hop first (never empty: checked by [`Inner::leg`]).
    fn expected(&self) -> Vec<MsrpUri> {
        UriList::new(self.expected.clone(), 0)
            .filter_map(Result::ok)
            .collect()
    }

    /// A batch is in the socket: its SENDs whose 200 is awaited are held until it comes
    /// ([`decide::Outstanding::hold`]: at most `queue_depth` messages and `queue_bytes` bytes
    /// per leg, the oldest let go first), so that a drop before it hands them to the keeper
    /// ([`takeover`]); everything else is dropped. The batch's byte budget is given back now:
    /// what is held is bounded on its own and never holds up the senders.
    fn hold_written(&self, batch: Batch, cfg: &RelayConfig) {
        let bytes = batch.bytes();
        {
            let mut o = lock(&self.outstanding);
            for out in batch.items {
                // Responses and REPORTs get no 200 (RFC 4975 §7.1.2): dropped.
                if out.msg.method() == Some(&Method::Send) {
                    o.hold(out.msg, out.len, cfg.queue_depth, cfg.queue_bytes);
                }
            }
        }
        self.queue.budget.add_permits(bytes);
    }

    /// Remember a request sent on this leg; returns the entry dropped to make room.
    fn track(&self, p: Pending) -> Option<Pending> {
        let (evicted, first) = {
            let mut o = lock(&self.outstanding);
            let first = o.is_empty();
            (o.insert(p), first)
        };
        if first {
            self.wake.notify_waiters();
        }
        evicted
    }
}

/// A queued message, its encoded size and its share of the leg's byte budget (given back
/// once written, or once kept for a dropped leg).
struct Out {
    msg: Message,
    len: usize,
    bytes: u32,
    /// Told the status of a SEND kept for a dropped leg ([`takeover`]).
    done: Option<oneshot::Sender<u16>>,
}

/// Whether a leg's queue has a writer.
enum Writer {
    /// The connection is not up yet: messages wait.
    Waiting,
    /// The connection is up and nothing is queued: no writer task runs, the write half waits
    /// here, and the next push starts a writer with it (issue 9: a held session keeps no
    /// writer task).
    Idle(Wr),
    /// A writer task drains it (or, once the leg dropped, its keeper: [`takeover`]); with a
    /// [`link::Handoff`] when a second session bound on its connection: the writer gives its
    /// own write half to the link at its next batch.
    Running(Option<Box<link::Handoff>>),
    /// Closed: nothing is queued any more (senders get `false`).
    Closed,
}

/// What [`Queue::push`] did.
enum Pushed {
    /// Queued; its writer runs.
    Queued,
    /// Queued; the queue had no writer task: start one with this write half.
    Start(Wr),
    /// The queue is closed: not queued.
    Closed,
}

struct QueueState {
    items: VecDeque<Out>,
    writer: Writer,
}

/// A leg's outgoing queue, bounded in messages (`queue_depth`) and in bytes (`queue_bytes`)
/// like a bounded channel, but holding no memory while it is empty: a held session costs
/// nothing here until it has something to send (issue 9).
struct Queue {
    state: Mutex<QueueState>,
    /// Free message slots: taken by a sender, given back when the writer takes the message.
    slots: Semaphore,
    /// Free bytes: taken by a sender, given back once the message's bytes are in the socket
    /// (or the message is kept, [`takeover`]).
    budget: Semaphore,
    /// Poked on each push.
    ready: Notify,
}

/// Messages taken off a queue to be written together, oldest first: kept until their bytes
/// are in the socket, so that a batch a drop interrupts goes to the keeper ([`takeover`]).
struct Batch {
    items: Vec<Out>,
    /// Their encoded size.
    len: usize,
}

impl Batch {
    /// The batch's wire form, in a buffer of exactly its size (freed once written).
    fn encode(&self) -> BytesMut {
        let mut out = BytesMut::with_capacity(self.len);
        for o in &self.items {
            o.msg.encode(&mut out);
        }
        out
    }

    /// The bytes of budget its messages hold.
    fn bytes(&self) -> usize {
        self.items
            .iter()
            .fold(0usize, |n, o| n.saturating_add(o.bytes as usize))
    }
}

impl Queue {
    fn new(depth: usize, bytes: usize) -> Queue {
        Queue {
            state: Mutex::new(QueueState {
                items: VecDeque::new(),
                writer: Writer::Waiting,
            }),
            slots: Semaphore::new(depth.max(1)),
            budget: Semaphore::new(bytes.clamp(1, Semaphore::MAX_PERMITS)),
            ready: Notify::new(),
        }
    }

    /// The leg's connection is up: its write half waits in the queue until there is
    /// something to write; returned when something is queued already (start a writer with
    /// it). `Err` when the queue was claimed or closed before.
    fn claim(&self, wr: Wr) -> Result<Option<Wr>, ()> {
        let mut st = lock(&self.state);
        if !matches!(st.writer, Writer::Waiting) {
            return Err(());
        }
        if st.items.is_empty() {
            st.writer = Writer::Idle(wr);
            Ok(None)
        } else {
            st.writer = Writer::Running(None);
            Ok(Some(wr))
        }
    }

    /// The handoff of this queue's write half to a link, if one is asked ([`link`]).
    fn take_handoff(&self) -> Option<Box<link::Handoff>> {
        match &mut lock(&self.state).writer {
            Writer::Running(h) => h.take(),
            _ => None,
        }
    }

    /// Queue a message whose slot and bytes the caller took.
    fn push(&self, out: Out) -> Pushed {
        let pushed = {
            let mut st = lock(&self.state);
            if matches!(st.writer, Writer::Closed) {
                drop(st);
                drop(out);
                return Pushed::Closed;
            }
            st.items.push_back(out);
            match std::mem::replace(&mut st.writer, Writer::Running(None)) {
                Writer::Idle(wr) => Pushed::Start(wr),
                other => {
                    st.writer = other;
                    Pushed::Queued
                }
            }
        };
        if matches!(pushed, Pushed::Queued) {
            self.ready.notify_one();
        }
        pushed
    }

    /// The writer found nothing to write: its write half waits in the queue (the task
    /// ends), unless something was queued meanwhile or the session or leg is ending (then
    /// the writer goes on and gets it back).
    fn park(&self, wr: Wr, stopped: &Flag, dropped: &Flag) -> Result<(), Wr> {
        let mut st = lock(&self.state);
        // Checked under the lock: whoever cancels then looks at the queue under it too
        // ([`Queue::wake`], [`Queue::close_unclaimed`]), so an ending is never missed.
        if matches!(st.writer, Writer::Running(Some(_))) {
            // A link asks for the write half: the writer hands it over first.
            return Err(wr);
        }
        if !matches!(st.writer, Writer::Running(None)) {
            // Closed under a running writer (never: only the writer closes it): nothing more
            // is written, the write half goes (FIN).
            drop(st);
            drop(wr);
            return Ok(());
        }
        if !st.items.is_empty() || stopped.is_set() || dropped.is_set() {
            return Err(wr);
        }
        if st.items.capacity() > 0 {
            st.items = VecDeque::new();
        }
        st.writer = Writer::Idle(wr);
        Ok(())
    }

    /// The write half of a queue with no writer task, to start one (the leg was taken over:
    /// the writer drains the queue into its keeper).
    fn wake(&self) -> Option<Wr> {
        let mut st = lock(&self.state);
        match std::mem::replace(&mut st.writer, Writer::Running(None)) {
            Writer::Idle(wr) => Some(wr),
            other => {
                st.writer = other;
                None
            }
        }
    }

    /// Take what is queued, oldest first, up to about [`WRITE_BATCH`] encoded bytes (at
    /// least one message). `None` when empty: the queue's own memory is given back then. The
    /// slots are free from now on; the bytes are the taker's to give back ([`Queue::written`]).
    fn take_batch(&self) -> Option<Batch> {
        let batch = {
            let mut st = lock(&self.state);
            if st.items.is_empty() {
                if st.items.capacity() > 0 {
                    st.items = VecDeque::new();
                }
                return None;
            }
            let (mut n, mut len) = (0usize, 0usize);
            while len < WRITE_BATCH
                && let Some(o) = st.items.get(n)
            {
                len = len.saturating_add(o.len);
                n += 1;
            }
            Batch {
                items: st.items.drain(..n).collect(),
                len,
            }
        };
        // Taken out of the queue: its slots are free (as a bounded channel's receive frees them).
        self.slots.add_permits(batch.items.len());
        Some(batch)
    }

    /// Take the oldest message (its slot is free from now on, its bytes are the taker's to
    /// give back); `None` when empty. For a dropped leg's keeper ([`takeover`]).
    fn take_one(&self) -> Option<Out> {
        let out = {
            let mut st = lock(&self.state);
            let out = st.items.pop_front();
            if out.is_none() && st.items.capacity() > 0 {
                st.items = VecDeque::new();
            }
            out
        };
        if out.is_some() {
            self.slots.add_permits(1);
        }
        out
    }

    /// A taken batch is in the socket: drop its messages, give back their bytes.
    fn written(&self, batch: Batch) {
        let bytes = batch.bytes();
        drop(batch);
        self.budget.add_permits(bytes);
    }

    /// Close for good: drop what is queued, fail every sender.
    fn close(&self) {
        let (items, writer) = {
            let mut st = lock(&self.state);
            let writer = std::mem::replace(&mut st.writer, Writer::Closed);
            (std::mem::take(&mut st.items), writer)
        };
        self.slots.close();
        self.budget.close();
        drop(items);
        drop(writer);
    }

    /// Close unless a writer task runs (it flushes what is queued, then closes). A parked
    /// write half is dropped, which shuts the connection's sending side down (FIN).
    fn close_unclaimed(&self) {
        let (items, writer) = {
            let mut st = lock(&self.state);
            if matches!(st.writer, Writer::Running(_) | Writer::Closed) {
                return;
            }
            let writer = std::mem::replace(&mut st.writer, Writer::Closed);
            (std::mem::take(&mut st.items), writer)
        };
        self.slots.close();
        self.budget.close();
        drop(items);
        drop(writer);
    }
}

/// A one-way signal (set once, never cleared). Its waiters wait on a leg's `wake`
/// ([`Leg::until`]), poked by whoever sets it: no `Notify` of its own (issue 9).
#[derive(Default)]
struct Flag(AtomicBool);

impl Flag {
    fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Transaction-ids and Message-IDs of the node's own requests: 16 hex digits of a keyed
/// hash of a counter (RFC 4975 §9 `ident`; unique, not secret).
struct Tids {
    keys: RandomState,
    counter: AtomicU64,
}

impl Tids {
    fn next(&self) -> Bytes {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        Bytes::from(format!("{:016x}", self.keys.hash_one(n)))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The host part of an MSRP URI for a socket address (IPv6 in brackets, RFC 3986 §3.2.2).
/// Leaked once per listener (a relay binds two, a node one relay): a static `Bytes` is
/// cloned without a shared reference count, and the node's URI on a leg is built with it for
/// every request relayed ([`Inner::local_uri`]).
fn host_of(addr: SocketAddr) -> Bytes {
    let host = match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    Bytes::from_static(Box::leak(host.into_boxed_str()).as_bytes())
}

impl MsrpRelay {
    /// Bind the CPM-side and SIMPLE-side listeners and start accepting.
    pub async fn bind(
        cpm: SocketAddr,
        simple: SocketAddr,
        cfg: RelayConfig,
    ) -> io::Result<(MsrpRelay, mpsc::Receiver<RelayEvent>)> {
        let cpm_l = TcpListener::bind(cpm).await?;
        let simple_l = TcpListener::bind(simple).await?;
        let (events, rx) = mpsc::channel(cfg.event_queue.max(1));
        let (cpm_addr, simple_addr) = (cpm_l.local_addr()?, simple_l.local_addr()?);
        let inner = Arc::new(Inner {
            cpm_addr,
            simple_addr,
            cpm_host: host_of(cpm_addr),
            simple_host: host_of(simple_addr),
            sessions: Mutex::new(HashMap::new()),
            passive: Mutex::new(HashMap::new()),
            events,
            tids: Tids {
                keys: RandomState::new(),
                counter: AtomicU64::new(0),
            },
            unbound: Arc::new(Semaphore::new(cfg.max_unbound.max(1))),
            shutdown: CancellationToken::new(),
            dials: link::Dials::default(),
            cfg,
        });
        tokio::spawn(accept_loop(inner.clone(), Side::Cpm, cpm_l));
        tokio::spawn(accept_loop(inner.clone(), Side::Simple, simple_l));
        Ok((MsrpRelay { inner }, rx))
    }

    /// The listener address of a side.
    pub fn local_addr(&self, side: Side) -> SocketAddr {
        self.inner.addr(side)
    }

    /// The node's MSRP URI on a side for a session-id: `msrp://<listen ip>:<port>/<id>;tcp`
    /// (RFC 4975 §6), what the B2BUA writes in that leg's `a=path`. Bind a specific address:
    /// an unspecified one (0.0.0.0) would be written as is.
    pub fn local_uri(&self, side: Side, session_id: &Bytes) -> MsrpUri {
        self.inner.local_uri(side, session_id)
    }

    /// A fresh session-id for a leg (RFC 4975 §6: unpredictable, 16 hex digits here).
    pub fn new_session_id(&self) -> Bytes {
        self.inner.tids.next()
    }

    /// Start relaying a session: passive legs wait for their peer (at most
    /// `connect_timeout`), active legs connect now.
    pub fn open(&self, spec: SessionSpec) -> Result<(), OpenError> {
        self.inner.open(spec)
    }

    /// Stop relaying a session and close its connections (no event). Whether it existed.
    pub fn close(&self, id: u64) -> bool {
        let session = lock(&self.inner.sessions).get(&id).cloned();
        match session {
            Some(s) if !s.ended.swap(true, Ordering::AcqRel) => {
                s.stop();
                self.inner.forget(&s);
                true
            }
            _ => false,
        }
    }

    /// Sessions being relayed.
    pub fn sessions(&self) -> usize {
        lock(&self.inner.sessions).len()
    }

    /// Stop accepting and close every session.
    pub fn shutdown(&self) {
        self.inner.stop();
    }
}

impl Drop for MsrpRelay {
    fn drop(&mut self) {
        self.inner.stop();
    }
}

fn local_uri(addr: SocketAddr, host: &Bytes, session_id: &Bytes) -> MsrpUri {
    MsrpUri {
        secure: false,
        userinfo: None,
        host: host.clone(),
        port: Some(addr.port()),
        session_id: Some(session_id.clone()),
        transport: Bytes::from_static(b"tcp"),
        params: Bytes::new(),
    }
}

impl Inner {
    fn addr(&self, side: Side) -> SocketAddr {
        match side {
            Side::Cpm => self.cpm_addr,
            Side::Simple => self.simple_addr,
        }
    }

    fn local_uri(&self, side: Side, session_id: &Bytes) -> MsrpUri {
        let host = match side {
            Side::Cpm => &self.cpm_host,
            Side::Simple => &self.simple_host,
        };
        local_uri(self.addr(side), host, session_id)
    }

    fn leg(&self, spec: LegSpec) -> Result<Leg, OpenError> {
        let local = self.local_uri(spec.side, &spec.local_session_id);
        // The session-id must survive a round trip through the RFC 4975 §9 grammar.
        match MsrpUri::parse_str(&local.to_string()) {
            Ok(u) if u.session_id.as_ref() == Some(&spec.local_session_id) => {}
            _ => {
                return Err(OpenError::LocalSessionId(
                    String::from_utf8_lossy(&spec.local_session_id).into_owned(),
                ));
            }
        }
        let Some(first) = spec.remote_path.first() else {
            return Err(OpenError::RemotePath("empty a=path"));
        };
        if spec.setup == Setup::Active && first.port.is_none() {
            return Err(OpenError::RemotePath("first URI has no port"));
        }
        Ok(Leg {
            local_sid: spec.local_session_id,
            expected: path_bytes(&spec.remote_path)
                .ok_or(OpenError::RemotePath("a=path does not survive re-encoding"))?,
            setup: spec.setup,
            cema: spec.cema,
            queue: Queue::new(self.cfg.queue_depth, self.cfg.queue_bytes),
            outstanding: Mutex::new(decide::Outstanding::new(self.cfg.max_outstanding)),
            wake: Notify::new(),
            bound: AtomicBool::new(false),
            dropped: Flag::default(),
            taking: AtomicBool::new(false),
            kept: OnceLock::new(),
        })
    }

    fn open(self: &Arc<Self>, spec: SessionSpec) -> Result<(), OpenError> {
        let [a, b] = spec.legs;
        let (cpm, simple) = match (a.side, b.side) {
            (Side::Cpm, Side::Simple) => (a, b),
            (Side::Simple, Side::Cpm) => (b, a),
            _ => return Err(OpenError::Sides),
        };
        let session = Arc::new(Session {
            id: spec.id,
            cpm: self.leg(cpm)?,
            simple: self.leg(simple)?,
            translator: spec.translator,
            // Not a child token of `shutdown` (a tree node per session): [`Inner::stop`]
            // stops every session.
            stopped: Flag::default(),
            ended: AtomicBool::new(false),
        });
        let passive: Vec<Side> = [Side::Cpm, Side::Simple]
            .into_iter()
            .filter(|s| session.leg(*s).setup == Setup::Passive)
            .collect();
        {
            let mut sessions = lock(&self.sessions);
            if sessions.contains_key(&spec.id) {
                return Err(OpenError::DuplicateId(spec.id));
            }
            if sessions.len() >= self.cfg.max_sessions {
                return Err(OpenError::TooManySessions);
            }
            let mut waiting = lock(&self.passive);
            if waiting.len() + passive.len() > self.cfg.max_pending_passive {
                return Err(OpenError::TooManyPending);
            }
            for side in &passive {
                let key = (*side, session.leg(*side).local_sid.clone());
                if waiting.contains_key(&key) {
                    return Err(OpenError::LocalSessionId(
                        String::from_utf8_lossy(&key.1).into_owned(),
                    ));
                }
            }
            for side in &passive {
                let key = (*side, session.leg(*side).local_sid.clone());
                waiting.insert(key, session.clone());
            }
            sessions.insert(spec.id, session.clone());
        }
        // Stopped meanwhile (`stop` cancels what the map holds once `shutdown` is cancelled).
        if self.shutdown.is_cancelled() {
            session.stop();
        }
        for side in [Side::Cpm, Side::Simple] {
            if session.leg(side).setup == Setup::Active {
                tokio::spawn(dial(self.clone(), session.clone(), side));
            }
        }
        if !passive.is_empty() {
            tokio::spawn(watch_passive(self.clone(), session));
        }
        Ok(())
    }

    /// Stop accepting and cancel every session.
    fn stop(&self) {
        self.shutdown.cancel();
        let all: Vec<Arc<Session>> = lock(&self.sessions).values().cloned().collect();
        for session in all {
            session.stop();
        }
    }

    /// Drop a session from the maps and its not yet connected queues.
    fn forget(&self, session: &Arc<Session>) {
        {
            let mut sessions = lock(&self.sessions);
            if sessions
                .get(&session.id)
                .is_some_and(|s| Arc::ptr_eq(s, session))
            {
                sessions.remove(&session.id);
            }
        }
        let mut waiting = lock(&self.passive);
        for side in [Side::Cpm, Side::Simple] {
            let key = (side, session.leg(side).local_sid.clone());
            if waiting.get(&key).is_some_and(|s| Arc::ptr_eq(s, session)) {
                waiting.remove(&key);
            }
            session.leg(side).queue.close_unclaimed();
        }
    }

    /// End a session once: close both connections, tell the B2BUA.
    async fn end(&self, session: &Arc<Session>, side: Side, reason: EndReason) {
        if session.ended.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::debug!(id = session.id, ?side, %reason, "MSRP session ended");
        session.stop();
        self.forget(session);
        let _ = self
            .events
            .send(RelayEvent::SessionEnded {
                id: session.id,
                side,
                reason,
            })
            .await;
    }

    /// The session a passive connection's first request names (RFC 4975 §5.4: the last URI
    /// of its To-Path), claimed for this connection; or the status code to refuse it with.
    fn claim(&self, side: Side, req: &Message) -> Result<Arc<Session>, u16> {
        let to = req
            .to_path_uris()
            .filter_map(Result::ok)
            .last()
            .ok_or(481u16)?;
        let sid = to.session_id.clone().ok_or(481u16)?;
        let from = req.from_path().map_err(|_| 400u16)?;
        let mut waiting = lock(&self.passive);
        let key = (side, sid);
        let session = waiting.get(&key).cloned().ok_or(481u16)?;
        let leg = session.leg(side);
        if !decide::addressed_to(&self.local_uri(side, &leg.local_sid), &to, leg.cema)
            || !decide::peer_matches(&leg.expected(), &from, leg.cema)
        {
            return Err(481);
        }
        waiting.remove(&key);
        leg.bound.store(true, Ordering::Release);
        Ok(session)
    }
}

async fn accept_loop(inner: Arc<Inner>, side: Side, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, _)) => match inner.unbound.clone().try_acquire_owned() {
                Ok(permit) => {
                    tokio::spawn(accept_conn(inner.clone(), side, stream, permit));
                }
                // Over max_unbound: refuse by closing.
                Err(_) => drop(stream),
            },
            // Out of descriptors and the like: back off instead of spinning.
            Err(e) => {
                tracing::warn!(?side, error = %e, "MSRP accept failed");
                sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A connection to a side's listener: read its first request, bind it to its session, then
/// relay. The setup runs in its own allocation, freed once the leg is up, so that the task
/// of a held session is only as large as its reading loop (issue 9).
fn accept_conn(
    inner: Arc<Inner>,
    side: Side,
    stream: TcpStream,
    permit: OwnedSemaphorePermit,
) -> impl Future<Output = ()> + Send {
    then_run(Box::pin(accept_setup(inner, side, stream, permit)))
}

/// The setup, then the reader it gives runs, in one future as large as the larger of the
/// two: an `async` block awaiting one then the other would keep room for the reader twice.
fn then_run(
    setup: Pin<Box<dyn Future<Output = Option<Reader>> + Send>>,
) -> impl Future<Output = ()> + Send {
    setup
        .then(|reader| OptionFuture::from(reader.map(Reader::run)))
        .map(drop)
}

async fn accept_setup(
    inner: Arc<Inner>,
    side: Side,
    mut stream: TcpStream,
    permit: OwnedSemaphorePermit,
) -> Option<Reader> {
    let _ = stream.set_nodelay(true);
    let mut codec = MsrpCodec::new(inner.cfg.limits.clone());
    let mut buf = BytesMut::with_capacity(4 * 1024);
    let deadline = Instant::now() + inner.cfg.first_request_timeout;
    let frame = loop {
        match codec.decode(&mut buf) {
            Ok(Some(f)) => break f,
            Ok(None) => {}
            Err(_) => return None,
        }
        reserve(&mut buf);
        let read = tokio::select! {
            _ = inner.shutdown.cancelled() => return None,
            r = timeout_at(deadline, stream.read_buf(&mut buf)) => r,
        };
        match read {
            Ok(Ok(n)) if n > 0 => {}
            _ => return None,
        }
    };
    // A first frame that is a response, or whose paths are unreadable, names no session.
    let Frame::Message(req) = frame else {
        return None;
    };
    req.method()?;
    match inner.claim(side, &req) {
        Ok(session) => {
            drop(permit);
            let peer_hop = match req.from_path_uris().filter_map(Result::ok).next() {
                Some(u) => uri_bytes(&u),
                None => {
                    let leg = session.leg(side);
                    let local = inner.local_uri(side, &leg.local_sid);
                    uri_bytes(leg.expected().first().unwrap_or(&local))
                }
            };
            Reader::start(
                inner,
                session,
                side,
                stream,
                codec,
                buf,
                peer_hop,
                Some(req),
            )
            .await
        }
        Err(code) => {
            // RFC 4975 §7.3: unknown session, 481, and this connection serves nothing else.
            if let Some(resp) = decide::answer(&req, code) {
                let _ = timeout(inner.cfg.stall_timeout, stream.write_all(&resp.to_bytes())).await;
            }
            let _ = timeout(inner.cfg.stall_timeout, stream.shutdown()).await;
            linger(&mut stream, &mut buf).await;
            None
        }
    }
}

/// Read and discard what the peer still sends (a little, briefly) before closing, so that
/// unread input does not make the close a reset that could destroy the answer just sent.
async fn linger(stream: &mut TcpStream, buf: &mut BytesMut) {
    let until = Instant::now() + Duration::from_millis(500);
    for _ in 0..16 {
        buf.clear();
        reserve(buf);
        match timeout_at(until, stream.read_buf(buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
    }
}

/// The active leg: connect to the first URI of the peer's path and bind the connection with
/// a bodiless SEND (RFC 4975 §5.4), then relay. As for [`accept_conn`], the setup has its
/// own allocation.
fn dial(inner: Arc<Inner>, session: Arc<Session>, side: Side) -> impl Future<Output = ()> + Send {
    then_run(Box::pin(dial_setup(inner, session, side)))
}

async fn dial_setup(inner: Arc<Inner>, session: Arc<Session>, side: Side) -> Option<Reader> {
    if inner.cfg.share_connections {
        return Box::pin(link::dial_shared(inner, session, side)).await;
    }
    let leg = session.leg(side);
    let expected = leg.expected();
    let first = expected.first()?;
    let host = String::from_utf8_lossy(&first.host)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = first.port.unwrap_or_default();
    let peer_hop = uri_bytes(first);
    let connected = tokio::select! {
        _ = session.stopped() => return None,
        r = timeout(inner.cfg.connect_timeout, TcpStream::connect((host.as_str(), port))) => r,
    };
    let mut stream = match connected {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            inner
                .end(&session, side, EndReason::ConnectFailed(e.to_string()))
                .await;
            return None;
        }
        Err(_) => {
            inner.end(&session, side, EndReason::ConnectTimeout).await;
            return None;
        }
    };
    let _ = stream.set_nodelay(true);
    let tid = inner.tids.next();
    let mut bind = Message::request(tid.clone(), Method::Send);
    bind.set_to_path(&expected);
    bind.set_from_path(&[inner.local_uri(side, &leg.local_sid)]);
    bind.set_header("Message-ID", inner.tids.next());
    leg.track(Pending {
        transaction_id: tid,
        at: Instant::now(),
        kind: PendingKind::Bind,
    });
    // Written before the writer starts: the bodiless SEND is the first thing on the wire.
    let wire = bind.to_bytes();
    drop(bind);
    let written = tokio::select! {
        _ = session.stopped() => return None,
        r = timeout(inner.cfg.stall_timeout, stream.write_all(&wire)) => r,
    };
    drop(wire);
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            inner
                .end(&session, side, EndReason::Io(e.to_string()))
                .await;
            return None;
        }
        Err(_) => {
            inner.end(&session, side, EndReason::Stalled).await;
            return None;
        }
    }
    leg.bound.store(true, Ordering::Release);
    let codec = MsrpCodec::new(inner.cfg.limits.clone());
    Reader::start(
        inner,
        session,
        side,
        stream,
        codec,
        BytesMut::new(),
        peer_hop,
        None,
    )
    .await
}

/// End the session if a passive leg's peer has not connected within `connect_timeout`.
async fn watch_passive(inner: Arc<Inner>, session: Arc<Session>) {
    tokio::select! {
        _ = session.stopped() => {}
        _ = sleep(inner.cfg.connect_timeout) => {
            for side in [Side::Cpm, Side::Simple] {
                let leg = session.leg(side);
                if leg.setup == Setup::Passive && !leg.bound.load(Ordering::Acquire) {
                    // Boxed: this task lives as long as the connect timeout for every session.
                    Box::pin(inner.end(&session, side, EndReason::ConnectTimeout)).await;
                    return;
                }
            }
        }
    }
}

/// Keep room for a read without growing the buffer past what the codec allows.
fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < 4 * 1024 {
        buf.reserve(16 * 1024);
    }
}

/// A URI's wire form in a small buffer of its own: a slice of the frame it came in would
/// keep that frame's whole read buffer alive for the session's life.
fn uri_bytes(u: &MsrpUri) -> Bytes {
    let mut b = BytesMut::with_capacity(u.encoded_len());
    u.write_to(&mut b);
    b.freeze()
}

/// A path's wire form in a buffer of exactly its size (see [`uri_bytes`]), when it parses
/// back to the same URIs.
fn path_bytes(uris: &[MsrpUri]) -> Option<Bytes> {
    let len = uris.iter().map(MsrpUri::encoded_len).sum::<usize>() + uris.len();
    let mut b = BytesMut::with_capacity(len);
    write_uri_list(&mut b, uris);
    let b = b.freeze();
    let mut back = UriList::new(b.clone(), 0);
    let same = uris
        .iter()
        .all(|u| matches!(back.next(), Some(Ok(p)) if p == *u))
        && back.next().is_none();
    same.then_some(b)
}

const WRITE_BATCH: usize = 64 * 1024;

/// Start a writer task for a leg whose queue had none ([`Pushed::Start`], [`Queue::wake`]).
fn start_writer(inner: &Arc<Inner>, session: &Arc<Session>, side: Side, wr: Wr) {
    tokio::spawn(write_loop(inner.clone(), session.clone(), side, wr));
}

/// Drain a leg's queue to its socket, several messages per write when they are queued. The
/// bytes are encoded into a buffer of their size when there is something to write, and freed
/// once written: an idle leg holds no write buffer (issue 9). Started by the push that finds
/// the queue without a writer; ends when the queue is empty, the write half going back to
/// the queue ([`Queue::park`]): an idle leg has no writer task either.
///
/// When the session is closed (a BYE) what is already queued is still written, within
/// [`FLUSH_ON_CLOSE`]: those messages were answered 200 to their sender, so they must reach
/// the other leg (nothing accepted is lost); a write in progress is finished, never cut.
///
/// When the leg dropped and is taken over ([`takeover`]) the writer stops writing and drains
/// the queue into the keeper instead: the batch it was writing first, then the rest, in order.
async fn write_loop(inner: Arc<Inner>, session: Arc<Session>, side: Side, mut wr: Wr) {
    let leg = session.leg(side);
    let queue = &leg.queue;
    let mut closing: Option<Instant> = None;
    // What the writer held when the leg was taken over: kept first.
    let held: Option<Batch> = loop {
        link::hand_over(queue, &mut wr);
        if closing.is_none() && session.is_stopped() {
            closing = Some(Instant::now() + FLUSH_ON_CLOSE);
        }
        let Some(batch) = queue.take_batch() else {
            if closing.is_some() || leg.is_dropped() {
                break None;
            }
            // Nothing to write: the task ends, the write half waits in the queue for the
            // next push (issue 9).
            match queue.park(wr, &session.stopped, &leg.dropped) {
                Ok(()) => return,
                Err(w) => wr = w,
            }
            continue;
        };
        // Taken over (the keeper is set before `dropped`, and before any SEND is queued for
        // it): nothing more goes to the dropped peer.
        if leg.kept.get().is_some() {
            break Some(batch);
        }
        let out = batch.encode();
        let limit = match closing {
            Some(until) => until.saturating_duration_since(Instant::now()),
            None => inner.cfg.stall_timeout,
        };
        let written = tokio::select! {
            // Taken over while writing: what is being written is kept instead.
            _ = leg.until(|| leg.is_dropped()), if closing.is_none() => break Some(batch),
            r = timeout(limit, wr.write_all(&out)) => r,
        };
        drop(out);
        let reason = match written {
            Ok(Ok(())) => {
                // The byte budget is given back once the bytes are in the socket; a SEND
                // stays held until its 200 (RFC 4975 §7.1.1), for a drop before it.
                leg.hold_written(batch, &inner.cfg);
                continue;
            }
            Ok(Err(e)) => EndReason::Io(e.to_string()),
            Err(_) => EndReason::Stalled,
        };
        // A shared connection failed for every session on it: its reader ends them all.
        wr.fail(&reason);
        if Box::pin(inner.leg_failed(&session, side, reason)).await {
            // Taken over, or being decided by the leg's reader: wait for the verdict (a
            // keeper, or the session's end) so that the queue is not closed under a keeper.
            leg.until(|| leg.is_dropped() || session.is_stopped()).await;
            if leg.is_dropped() {
                break Some(batch);
            }
        }
        queue.written(batch);
        break None;
    };
    // A handoff asked meanwhile still gets the write half: the link's other sessions use it.
    link::hand_over(queue, &mut wr);
    if leg.kept.get().is_some() {
        drop(wr);
        Box::pin(takeover::drain(
            inner.clone(),
            session.clone(),
            side,
            held.map(|b| b.items).unwrap_or_default(),
        ))
        .await;
        queue.close();
        return;
    }
    drop(held);
    queue.close();
    // A shared connection stays up for its other sessions (its reader closes it).
    if let Wr::Own(mut wr) = wr {
        let _ = timeout(Duration::from_millis(200), wr.shutdown()).await;
    }
}

/// How long a closed session's writer may take to write what was already queued.
const FLUSH_ON_CLOSE: Duration = Duration::from_secs(2);

/// What a leg's tasks act with: the session, the leg, and how to reach its peer. The reader
/// handles its peer's frames with it; a dropped leg's keeper ([`takeover`]) answers for it.
struct Conn {
    inner: Arc<Inner>,
    session: Arc<Session>,
    side: Side,
    /// The leg's connection is shared with other sessions ([`link`]): a wait for room in a
    /// queue is bounded by `share_wait`, so that one session does not hold up the others.
    shared: bool,
    /// The peer's first hop (its wire form): where responses to unreadable requests go.
    peer_hop: Bytes,
}

/// One bound connection's reading side: everything a held leg keeps, in one place (the task's
/// future holds it once).
struct Reader {
    conn: Conn,
    rd: OwnedReadHalf,
    codec: MsrpCodec,
    /// What was read and not yet framed; empty (no allocation) while nothing is half-received.
    buf: BytesMut,
    /// The connection's [`link::Link`] once it carries (or may carry) several sessions; `None`
    /// for a connection of one leg, which costs nothing more than that leg (issue 9).
    link: Option<Arc<link::Link>>,
}

impl Reader {
    /// A bound connection: claim its queue and start its writer, handle its first request.
    /// `None` when the session is over already.
    #[allow(clippy::too_many_arguments)]
    async fn start(
        inner: Arc<Inner>,
        session: Arc<Session>,
        side: Side,
        stream: TcpStream,
        codec: MsrpCodec,
        buf: BytesMut,
        peer_hop: Bytes,
        first: Option<Message>,
    ) -> Option<Reader> {
        let (rd, wr) = stream.into_split();
        match session.leg(side).queue.claim(Wr::Own(wr)) {
            Err(()) => return None,
            Ok(Some(wr)) => start_writer(&inner, &session, side, wr),
            Ok(None) => {}
        }
        // Informational: never let a slow event consumer hold up relaying.
        let _ = inner.events.try_send(RelayEvent::LegConnected {
            id: session.id,
            side,
        });
        let mut reader = Reader {
            conn: Conn {
                inner,
                session,
                side,
                shared: false,
                peer_hop,
            },
            rd,
            codec,
            buf,
            link: None,
        };
        if let Some(m) = first {
            match reader.solo_frame(Frame::Message(m)).await {
                Step::Go => {}
                Step::Over => return None,
                Step::Shared(l) => reader.link = Some(l),
            }
        }
        Some(reader)
    }

    /// Relay until the connection fails (then take the leg over or end the session,
    /// [`Inner::leg_failed`]), the session is over, or the leg is taken over.
    ///
    /// Not an `async fn`: one with a `self` parameter moves it into a local of its body, so its
    /// future kept the reader twice (the captured argument and the local, 2 x 200 B, issue 9);
    /// this block uses the captured reader in place.
    fn run(self) -> impl Future<Output = ()> + Send {
        let mut reader = self;
        async move {
            let ended = match reader.link {
                Some(_) => Ended::Shared,
                None => reader.read_loop().await,
            };
            let Conn {
                inner,
                session,
                side,
                ..
            } = &reader.conn;
            match ended {
                Ended::Failed(reason) => {
                    Box::pin(inner.leg_failed(session, *side, reason)).await;
                }
                // A second session bound on this connection: from now on it is a shared
                // link's reader ([`link`]).
                Ended::Shared => Box::pin(reader.run_shared()).await,
                // The session is over: a leg with no writer task closes its queue (its write
                // half goes, which sends FIN); a running writer flushes what is queued, then
                // closes.
                Ended::Over if session.is_stopped() => session.leg(*side).queue.close_unclaimed(),
                Ended::Over => {}
            }
        }
    }

    /// Read and handle frames until the connection fails (`Some(reason)`), or the session is
    /// cancelled or the leg taken over ([`takeover`]) (`None`). What runs rarely, or only
    /// between two reads, is boxed: the future that waits on an idle connection stays small.
    async fn read_loop(&mut self) -> Ended {
        let mut last_read = Instant::now();
        // When the message now being received began (the stall timeout runs from there).
        let mut partial_since: Option<Instant> = (!is_blank(&self.buf)).then(Instant::now);
        // Re-armed before each wait, never re-created (one timer per leg).
        let mut timer = pin!(sleep_until(last_read + self.conn.inner.cfg.idle_timeout));
        loop {
            loop {
                // The frame is taken out of the decode result before the await: a `match` on
                // the result would keep room for the whole result in this future (issue 9).
                let frame = match self.codec.decode(&mut self.buf) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(e) => return Ended::Failed(EndReason::Framing(e.to_string())),
                };
                match Box::pin(self.solo_frame(frame)).await {
                    Step::Go => {}
                    Step::Over => return Ended::Over,
                    Step::Shared(l) => {
                        self.link = Some(l);
                        return Ended::Shared;
                    }
                }
                // Time spent waiting for the other leg's queue is not the peer's.
                partial_since = (!is_blank(&self.buf)).then(Instant::now);
            }
            if self.buf.is_empty() {
                // Nothing half-received: give the read buffer back while the peer is quiet
                // (frames split off it keep their own bytes until they are written).
                self.buf = BytesMut::new();
            }
            let cfg = &self.conn.inner.cfg;
            let session = &self.conn.session;
            let leg = session.leg(self.conn.side);
            // Enabled before the checks: a poke after them (the session's end, the leg's
            // drop, a first request tracked on this leg) still wakes the wait below.
            let mut poked = pin!(leg.wake.notified());
            poked.as_mut().enable();
            if session.is_stopped() || leg.is_dropped() {
                // Taken over: the keeper answers for this leg from now on.
                return Ended::Over;
            }
            // One timer: the transaction sweep (RFC 4975 §7.1.1) or the stall/idle deadline.
            // Worked out in a block: its locals are not kept across the wait (issue 9).
            let sweep_first = {
                let sweep_at = lock(&leg.outstanding).next_deadline(cfg.transaction_timeout);
                let deadline = match partial_since {
                    Some(t) => t + cfg.stall_timeout,
                    None => last_read + cfg.idle_timeout,
                };
                timer
                    .as_mut()
                    .reset(sweep_at.map_or(deadline, |s| s.min(deadline)));
                sweep_at.is_some_and(|s| s <= deadline)
            };
            // One hand-written wait on the poke, the socket and the timer (a `select!` kept a
            // future per wake-up source, issue 9). Readiness first, the buffer only once bytes
            // are there; polled straight on the socket: its waker slot is in the socket's
            // registration, so the waiting future holds no waiter of its own.
            let woke = poll_fn(|cx| {
                if poked.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Woke::Poked);
                }
                if let Poll::Ready(r) = self.rd.as_ref().poll_read_ready(cx) {
                    return Poll::Ready(Woke::Readable(r));
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Woke::Timer),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await;
            match woke {
                // Looked at again at the top of the loop.
                Woke::Poked => {}
                Woke::Timer if sweep_first => {
                    if !Box::pin(self.conn.expire()).await {
                        return Ended::Over;
                    }
                }
                Woke::Timer if partial_since.is_some() => return Ended::Failed(EndReason::Stalled),
                Woke::Timer => return Ended::Failed(EndReason::Idle),
                Woke::Readable(Err(e)) => return Ended::Failed(EndReason::Io(e.to_string())),
                Woke::Readable(Ok(())) => {
                    if let Err(r) = read_ready(
                        &self.rd,
                        &mut self.codec,
                        &mut self.buf,
                        &mut last_read,
                        &mut partial_since,
                    ) {
                        return Ended::Failed(r);
                    }
                }
            }
        }
    }
}

/// Read what a connection's socket has (its readiness said so) into its buffer; `Err` with
/// why the connection is over (EOF, an error). The stall clock starts at a message's first
/// bytes; blank lines between messages (keep-alives) do not start it. A function of the
/// reader's fields, not a method: its callers hold other borrows of the reader meanwhile.
fn read_ready(
    rd: &OwnedReadHalf,
    codec: &mut MsrpCodec,
    buf: &mut BytesMut,
    last_read: &mut Instant,
    partial_since: &mut Option<Instant>,
) -> Result<(), EndReason> {
    reserve(buf);
    let before = buf.len();
    match rd.try_read_buf(buf) {
        Ok(0) => Err(match codec.decode_eof(buf) {
            Err(e) => EndReason::Framing(e.to_string()),
            Ok(_) => EndReason::PeerClosed,
        }),
        Ok(_) => {
            *last_read = Instant::now();
            let fresh = buf.get(before..).unwrap_or_default();
            if partial_since.is_none() && !(before == 0 && is_blank(fresh)) {
                *partial_since = Some(*last_read);
            }
            Ok(())
        }
        // Readiness was stale: wait again (the empty buffer goes back).
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(EndReason::Io(e.to_string())),
    }
}

/// What a held leg's reader woke up for.
enum Woke {
    /// Its leg's `wake`: the session stopped, the leg dropped, or a request is tracked.
    Poked,
    /// Its socket (readiness, or the error it has).
    Readable(io::Result<()>),
    /// Its one timer: the transaction sweep, the stall or the idle deadline.
    Timer,
}

impl Conn {
    /// Requests forwarded on this leg whose response did not come in time: 408 (RFC 4975
    /// §7.1.1), which becomes a REPORT when the sender asked for failure reports.
    async fn expire(&self) -> bool {
        let leg = self.session.leg(self.side);
        let expired =
            lock(&leg.outstanding).expire(Instant::now(), self.inner.cfg.transaction_timeout);
        for p in expired {
            if !self
                .outcome(decide::on_timeout(&p, || self.inner.tids.next()))
                .await
            {
                return false;
            }
        }
        true
    }

    /// Act on a response (or a timeout) to a request the node sent on this leg.
    async fn responded(&self, p: &Pending, code: u16, comment: Option<Bytes>) -> bool {
        self.outcome(decide::on_response(p, code, comment, || {
            self.inner.tids.next()
        }))
        .await
    }

    /// Carry out what a response or a timeout on this leg leads to.
    async fn outcome(&self, outcome: ResponseOutcome) -> bool {
        match outcome {
            ResponseOutcome::Absorbed => true,
            ResponseOutcome::Report(r) => self.enqueue(self.side.other(), r).await,
            ResponseOutcome::BindRefused(c) => {
                self.inner
                    .end(&self.session, self.side, EndReason::BindRefused(c))
                    .await;
                false
            }
        }
    }

    /// Handle one frame; `false` when the session is over.
    async fn handle(&self, frame: Frame) -> bool {
        let leg = self.session.leg(self.side);
        match frame {
            Frame::Rejected {
                transaction_id,
                error,
            } => {
                tracing::debug!(side = ?self.side, %error, "MSRP frame rejected");
                let hop = MsrpUri::parse(self.peer_hop.clone()).ok();
                let expected = leg.expected();
                let local = self.inner.local_uri(self.side, &leg.local_sid);
                let hop = hop.as_ref().or(expected.first()).unwrap_or(&local);
                match decide::rejected_response(transaction_id, &error, hop, &local) {
                    Some(r) => self.enqueue(self.side, r).await,
                    None => true,
                }
            }
            Frame::Message(m) => match &m.start {
                StartLine::Response { code, comment } => {
                    let p = lock(&leg.outstanding).take(&m.transaction_id);
                    match p {
                        Some(p) => self.responded(&p, *code, comment.clone()).await,
                        // A response to nothing pending (late, or Failure-Report: no): absorbed.
                        None => true,
                    }
                }
                StartLine::Request { .. } => {
                    let action = decide::on_request(
                        self.side,
                        &self.inner.local_uri(self.side, &leg.local_sid),
                        leg.cema,
                        &m,
                        &*self.session.translator,
                    );
                    if self.session.leg(self.side.other()).kept.get().is_some() {
                        return self.towards_kept(&m, action).await;
                    }
                    if self.shared {
                        return Box::pin(self.act_shared(m, action)).await;
                    }
                    drop(m);
                    self.act(action).await
                }
            },
        }
    }

    async fn act(&self, action: RequestAction) -> bool {
        match action {
            RequestAction::Ignore => true,
            RequestAction::Answer(a) => self.enqueue(self.side, a).await,
            RequestAction::Forward { out, ok, track } => {
                let other = self.side.other();
                if let Some(kind) = track {
                    let p = Pending {
                        transaction_id: out.transaction_id.clone(),
                        at: Instant::now(),
                        kind,
                    };
                    let evicted = self.session.leg(other).track(p);
                    if let Some(e) = evicted {
                        // No room to wait for its response: treated as timed out.
                        let outcome = decide::on_timeout(&e, || self.inner.tids.next());
                        if let ResponseOutcome::Report(r) = outcome
                            && !self.enqueue(self.side, r).await
                        {
                            return false;
                        }
                    }
                }
                if !self.enqueue(other, out).await {
                    return false;
                }
                match ok {
                    Some(ok) => self.enqueue(self.side, ok).await,
                    None => true,
                }
            }
        }
    }

    /// [`Conn::act`] on a shared connection ([`link`]): a SEND whose target queue stays full
    /// for `share_wait` is answered 413 (RFC 4975 §7.3.1, §10.5: stop sending this message)
    /// and not forwarded, so that the link's reader goes on with the other sessions.
    async fn act_shared(&self, req: Message, action: RequestAction) -> bool {
        let RequestAction::Forward { out, ok, track } = action else {
            drop(req);
            return self.act(action).await;
        };
        let other = self.side.other();
        let tid = out.transaction_id.clone();
        if let Some(kind) = track {
            let p = Pending {
                transaction_id: tid.clone(),
                at: Instant::now(),
                kind,
            };
            if let Some(e) = self.session.leg(other).track(p) {
                let outcome = decide::on_timeout(&e, || self.inner.tids.next());
                if let ResponseOutcome::Report(r) = outcome
                    && !self.enqueue(self.side, r).await
                {
                    return false;
                }
            }
        }
        match self.enqueue_bounded(other, out, None).await {
            Enq::Queued => {}
            Enq::Over => return false,
            Enq::Busy => {
                drop(lock(&self.session.leg(other).outstanding).take(&tid));
                return match decide::answer(&req, 413) {
                    Some(a) => self.enqueue(self.side, a).await,
                    None => true,
                };
            }
        }
        drop(req);
        match ok {
            Some(ok) => self.enqueue(self.side, ok).await,
            None => true,
        }
    }

    /// Queue `msg` towards `side`'s peer, waiting (flow control) while its queue is full;
    /// `false` when the session is over.
    async fn enqueue(&self, side: Side, msg: Message) -> bool {
        self.enqueue_with(side, msg, None).await
    }

    /// [`Conn::enqueue`], with what to tell the status of a SEND kept for a dropped leg
    /// ([`takeover`]).
    async fn enqueue_with(
        &self,
        side: Side,
        msg: Message,
        done: Option<oneshot::Sender<u16>>,
    ) -> bool {
        // Busy (a shared connection's bounded wait): the message is dropped, its sender's
        // transaction times out (RFC 4975 §7.1.1); the session goes on.
        !matches!(self.enqueue_bounded(side, msg, done).await, Enq::Over)
    }

    /// [`Conn::enqueue_with`], telling a full queue ([`Enq::Busy`], only on a shared
    /// connection: after `share_wait`) from the session's end.
    async fn enqueue_bounded(
        &self,
        side: Side,
        msg: Message,
        done: Option<oneshot::Sender<u16>>,
    ) -> Enq {
        let queue = &self.session.leg(side).queue;
        // On a shared connection a full queue must not stall the other sessions' frames
        // behind this one (head-of-line blocking): wait at most `share_wait`.
        // No timer at all on an unshared one (the usual back-pressure: wait).
        let give_up = OptionFuture::from(self.shared.then(|| sleep(self.inner.cfg.share_wait)));
        tokio::pin!(give_up);
        let cap = self.inner.cfg.queue_bytes.max(1);
        let len = msg.encoded_len();
        let n = u32::try_from(len.clamp(1, cap)).unwrap_or(u32::MAX);
        // Bytes first, then a slot, as a bounded channel behind a byte semaphore did; each
        // wait only when there is no room now.
        let budget = match queue.budget.try_acquire_many(n) {
            Ok(p) => p,
            Err(TryAcquireError::Closed) => return Enq::Over,
            Err(TryAcquireError::NoPermits) => {
                let p = tokio::select! {
                    _ = self.session.stopped() => return Enq::Over,
                    _ = &mut give_up, if self.shared => return Enq::Busy,
                    p = queue.budget.acquire_many(n) => p,
                };
                let Ok(p) = p else { return Enq::Over };
                p
            }
        };
        let slot = match queue.slots.try_acquire() {
            Ok(p) => p,
            Err(TryAcquireError::Closed) => return Enq::Over,
            Err(TryAcquireError::NoPermits) => {
                let p = tokio::select! {
                    _ = self.session.stopped() => return Enq::Over,
                    _ = &mut give_up, if self.shared => return Enq::Busy,
                    p = queue.slots.acquire() => p,
                };
                let Ok(p) = p else { return Enq::Over };
                p
            }
        };
        if self.session.is_stopped() {
            return Enq::Over;
        }
        // Given back by the writer (or the keeper): the slot when it takes the message, the
        // bytes once written (or kept).
        budget.forget();
        slot.forget();
        match queue.push(Out {
            msg,
            len,
            bytes: n,
            done,
        }) {
            Pushed::Queued => Enq::Queued,
            Pushed::Start(wr) => {
                start_writer(&self.inner, &self.session, side, wr);
                Enq::Queued
            }
            Pushed::Closed => Enq::Over,
        }
    }
}

/// What [`Conn::enqueue_bounded`] did.
enum Enq {
    Queued,
    /// No room within `share_wait` (a shared connection): not queued.
    Busy,
    /// The session is over: not queued.
    Over,
}

/// What a solo reader's frame led to.
enum Step {
    /// Go on reading.
    Go,
    /// The session is over (or the leg taken over).
    Over,
    /// A second session bound on this connection: it is a [`link::Link`] from now on.
    Shared(Arc<link::Link>),
}

/// Why a solo reader's loop ended.
enum Ended {
    /// The session is over, or the leg was taken over.
    Over,
    /// The connection failed.
    Failed(EndReason),
    /// The connection carries several sessions now: the link's loop takes over.
    Shared,
}

/// Only line ends (RFC 4975 allows none between messages; the codec skips them).
fn is_blank(b: &[u8]) -> bool {
    b.iter().all(|c| *c == b'\r' || *c == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Refuse;
    impl ChunkTranslator for Refuse {
        fn send(&self, _: Side, _: &Message) -> Result<Message, (u16, &'static str)> {
            Err((403, "Forbidden"))
        }
        fn report(&self, _: Side, _: &Message) -> Option<Message> {
            None
        }
    }

    /// What a held session keeps for its life is its tasks' futures: they stay small, the
    /// setup and the rare paths are boxed (issue 9: <= 2 KiB a session in all).
    #[tokio::test]
    async fn held_session_futures_are_small() {
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (relay, _events) = MsrpRelay::bind(lo, lo, RelayConfig::default())
            .await
            .unwrap();
        let inner = relay.inner.clone();
        let spec = |side| LegSpec {
            side,
            local_session_id: relay.new_session_id(),
            remote_path: vec![MsrpUri::parse_str("msrp://127.0.0.1:9/abcd;tcp").unwrap()],
            setup: Setup::Active,
            cema: false,
        };
        let session = Arc::new(Session {
            id: 1,
            cpm: inner.leg(spec(Side::Cpm)).unwrap(),
            simple: inner.leg(spec(Side::Simple)).unwrap(),
            translator: Arc::new(Refuse),
            stopped: Flag::default(),
            ended: AtomicBool::new(false),
        });
        let listener = TcpListener::bind(lo).await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (rd, wr) = server.into_split();
        let reader = Reader {
            conn: Conn {
                inner: inner.clone(),
                session: session.clone(),
                side: Side::Cpm,
                shared: false,
                peer_hop: Bytes::new(),
            },
            rd,
            codec: MsrpCodec::new(Limits::default()),
            buf: BytesMut::new(),
            link: None,
        };
        let permit = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        let sizes = [
            ("reader", size_of_val(&reader.run())),
            (
                "writer",
                size_of_val(&write_loop(
                    inner.clone(),
                    session.clone(),
                    Side::Cpm,
                    Wr::Own(wr),
                )),
            ),
            (
                "dial",
                size_of_val(&dial(inner.clone(), session.clone(), Side::Simple)),
            ),
            (
                "accept",
                size_of_val(&accept_conn(inner.clone(), Side::Cpm, client, permit)),
            ),
            (
                "watch_passive",
                size_of_val(&watch_passive(inner.clone(), session.clone())),
            ),
            ("session", size_of::<Session>()),
        ];
        println!("sizes: {sizes:?}");
        // A held leg is its reader's task: a tokio 1.54 task cell is its future and 96 B,
        // rounded up to 128 B (`runtime::task::core::Cell`, `repr(align(128))`): a future of
        // at most 544 B keeps the cell at 640 B (920 B took 1,152 B). No writer task while
        // nothing is queued.
        for (name, size) in sizes {
            let most = match name {
                "writer" => 512,
                "session" => 832,
                "watch_passive" => 320,
                _ => 544,
            };
            assert!(size <= most, "{name}: {size} bytes (at most {most})");
        }
    }
}
