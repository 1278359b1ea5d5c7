//! The B2BUA core: the one task that owns every SIP transaction of the node, feeds what the
//! transports receive through the translator, applies its `Outcome`s to the table, and drives
//! the MSRP relay (ARCHITECTURE.md layer 5).
//!
//! One task owns the transaction maps, so nothing here is locked; the translator is a few
//! microseconds per message, so one task carries tens of thousands of messages a second. What
//! may block (a TCP connect to a next hop) is done by one sender task per side, fed by a
//! bounded queue: a slow peer delays its own side, never the core.
//!
//! Requests the node sends go to the side's first next hop (the operator's outbound proxy, RFC
//! 3261 §8.1.2); responses go back where the request came from (§18.2.2, by the transport's
//! route).

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use smallvec::SmallVec;
use tokio::sync::mpsc;

use super::availability::{AvailabilityEvent, RegEventWatcher, WatcherConfig};
use super::deferred::{self, Action, Answer, ScheduleConfig, Scheduler};
use super::ids::{DateTimeText, RandomIds, rfc3339_utc};
use super::msrp::{ChunkTranslator, LegSpec, MsrpRelay, RelayEvent, SessionSpec, Setup};
use super::timers::Deadlines;
use super::transaction::{
    ClientTransaction, Delivery, Kind, ServerTransaction, TimerConfig, TransactionEvent,
};
use super::transport::{
    Inbound, ResponseRoute, SipTransport, Target, TryRoute, UdpReceiver, request_via,
};
use crate::config::{StoreConfig, StorePolicy, Transport};
use crate::correlate::Table;
use crate::mapping::Mappings;
use crate::metrics::{self, LabelValue};
use crate::store::{MessageKey, Pending, Store, StoreError};
use crate::time::Millis;
use crate::translate::addr::with_tag;
use crate::translate::conversation::IdSource;
use crate::translate::session::{self, Addresses, MsrpLeg};
use crate::translate::state::{Change, Entry, Key, MessageOrigin, Side, View};
use crate::translate::{self, Env, Outcome, TranslateError};
use crate::wire::msrp::{Message, MsrpUri};
use crate::wire::sdp;
use crate::wire::sip::{SipMessage, method_name};

/// The core's maps: foldhash, randomly seeded per map (see Cargo.toml for why not SipHash).
/// The transaction keys hash once themselves (`key_hash`, one random seed per process).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Monotonic time since the node started: the `now` the translator and the table are given.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    /// A clock starting now.
    pub fn start() -> Self {
        Clock(Instant::now())
    }

    /// Milliseconds since the start.
    pub fn now(&self) -> Millis {
        Millis(u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX))
    }
}

/// One side's SIP I/O as the core sees it.
pub struct SideIo {
    /// The transport of this side.
    pub transport: SipTransport,
    /// Where requests to this side go.
    pub next_hop: Option<Target>,
    /// The node's address in the Via of the requests it sends (its listen address for the
    /// next hop's transport, §18.1.1).
    pub sent_by: std::net::SocketAddr,
    /// Timer values for transactions on this side.
    pub timers: TimerConfig,
}

/// What the core needs besides its I/O.
pub struct CoreParts {
    /// The correlation table (shared with the MSRP translators).
    pub table: Arc<Table>,
    /// The rewrite rules.
    pub mappings: Arc<Mappings>,
    /// The node's own addresses as the translator writes them.
    pub addrs: Arc<Addresses>,
    /// The time origin.
    pub clock: Clock,
    /// The MSRP relay.
    pub relay: Arc<MsrpRelay>,
    /// Most server transactions at once: beyond it, new requests get 503 (RFC 3261 §21.5.4).
    pub max_transactions: usize,
    /// The node's readiness (`/readyz`): the core clears it when a side stops listening.
    pub readiness: super::admin::Readiness,
    /// How often to probe each side's next hop with OPTIONS; `None`: never.
    pub probe_interval: Option<std::time::Duration>,
    /// Store-and-forward; `None`: off.
    pub store: Option<StoreParts>,
}

/// What store-and-forward needs (issue 7).
pub struct StoreParts {
    /// The durable store.
    pub store: Arc<dyn Store>,
    /// Its policy.
    pub config: StoreConfig,
    /// The core's own event queue: store calls run on spawned tasks and post their results
    /// here, so the core never waits on a disk or a Redis.
    pub events: mpsc::Sender<CoreEvent>,
    /// The delivery retry backoff (`[availability]`).
    pub retry: super::availability::RetrySchedule,
    /// How the node learns that users are back (`[availability]`).
    pub availability: crate::config::AvailabilityConfig,
    /// SIP limits for reading stored messages back.
    pub sip_limits: crate::wire::sip::Limits,
    /// The MSRP endpoint that answers chat sessions for callees who are not available.
    pub mailbox: super::mailbox::Mailbox,
}

/// The result of a store call, back on the core.
pub enum StoreEvent {
    /// A pager MESSAGE was stored (or not) for the server transaction `token` names.
    Put {
        /// The put's token.
        token: u64,
        /// The recipient.
        user: Bytes,
        /// Stored (durably), or why not.
        result: Result<(), StoreError>,
    },
    /// Messages of `user` to deliver, with what is remembered of their senders.
    Fetched {
        /// The recipient.
        user: Bytes,
        /// The messages, or the store failed.
        result: Result<Vec<(Pending, Option<MessageOrigin>)>, StoreError>,
    },
    /// A delivered message was removed (or the store failed to).
    Acked {
        /// The recipient.
        user: Bytes,
        /// Removed.
        ok: bool,
    },
    /// Messages that expired unsent.
    Expired(Vec<Pending>),
    /// A chat message of a session answered for `user` was kept (`node::mailbox`).
    Kept {
        /// The recipient.
        user: Bytes,
    },
    /// Users with messages waiting (start-up scan).
    Resume(Vec<Bytes>),
    /// The MSRP leg of side `side` of relay session `id` dropped mid-session and the relay
    /// keeps the messages towards its user (`node::msrp::takeover`): end that leg's dialog.
    LegDropped {
        /// The relay session.
        id: u64,
        /// The leg that dropped.
        side: Side,
        /// Why (for the BYE's Reason).
        reason: String,
    },
}

/// What the sessions' translators need to keep the messages towards a user whose MSRP leg
/// dropped (`[store] on_msrp_drop = "store"`).
struct DropParts {
    keeping: super::mailbox::Keeping,
    /// The node's Contact per side (CPM, SIMPLE).
    contacts: [String; 2],
    /// The store policy per side (CPM, SIMPLE).
    policies: [StorePolicy; 2],
    events: mpsc::Sender<CoreEvent>,
}

/// The core's store-and-forward state.
struct Deferred {
    parts: StoreParts,
    schedule: Scheduler,
    /// Server transactions waiting for their message to be stored, by put token.
    puts: HashMap<u64, Arc<ServerKey>>,
    next_token: u64,
    /// When expired messages were last looked for.
    expiry_checked: Millis,
    /// Whether an expiry check is in flight.
    expiry_busy: bool,
    /// The callee legs the mailbox stands in for (side, Call-ID) -> its MSRP session-id:
    /// requests in those dialogs are answered here, never sent.
    sunk: HashMap<(Side, String), Bytes>,
    /// RFC 3680 reg event subscriptions, when configured: the watcher, the side of the
    /// registrar, and its address when the registrar URI names one (else the side's next hop
    /// routes the SUBSCRIBEs).
    watcher: Option<(RegEventWatcher, Side, Option<Target>)>,
    /// For sessions whose leg drops; `None` with `on_msrp_drop = "end"`.
    drops: Option<Arc<DropParts>>,
}

impl Deferred {
    fn policy(&self, side: Side) -> &StorePolicy {
        match side {
            Side::Cpm => &self.parts.config.cpm,
            Side::Simple => &self.parts.config.simple,
        }
    }
}

/// A server transaction: RFC 3261 §17.2.3 matches a request by the branch of its top Via,
/// its sent-by and its method (ACK matching the INVITE).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ServerKey {
    /// Of the other fields, computed once ([`key_hash`]): growing a map of tens of thousands
    /// of transactions then hashes nothing again.
    hash: u64,
    side: Side,
    branch: String,
    sent_by: String,
    method: &'static str,
}

impl ServerKey {
    fn new(side: Side, branch: String, sent_by: String, method: &'static str) -> Self {
        let hash = key_hash((side, &branch, &sent_by, method));
        ServerKey {
            hash,
            side,
            branch,
            sent_by,
            method,
        }
    }
}

impl std::hash::Hash for ServerKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// One hash for a transaction key, the same for equal keys (one seed per process).
fn key_hash(parts: impl std::hash::Hash) -> u64 {
    use std::hash::BuildHasher;
    static SEED: std::sync::OnceLock<foldhash::fast::RandomState> = std::sync::OnceLock::new();
    SEED.get_or_init(Default::default).hash_one(parts)
}

/// A client transaction: §17.1.3 matches a response by the branch of its top Via and the
/// method of its CSeq.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ClientKey {
    /// As [`ServerKey::hash`].
    hash: u64,
    side: Side,
    branch: String,
    method: &'static str,
}

impl ClientKey {
    fn new(side: Side, branch: String, method: &'static str) -> Self {
        let hash = key_hash((side, &branch, method));
        ClientKey {
            hash,
            side,
            branch,
            method,
        }
    }
}

impl std::hash::Hash for ClientKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// The server transaction a client transaction serves, and the request the node received
/// there (shared with the server transaction's entry: one copy however many legs it forks).
type Origin = (Arc<ServerKey>, Arc<SipMessage>);

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
/// The keys are shared (one allocation per transaction, not one per timer set).
enum TxRef {
    Server(Arc<ServerKey>),
    Client(Arc<ClientKey>),
    /// The ACK kept for a session's 2xx (side, Call-ID) is no longer needed: its UAS stops
    /// retransmitting the 2xx 64*T1 after sending it (RFC 3261 §13.3.1.4).
    AckKept(Box<(Side, String)>),
}

/// The ACK the node sent for a 2xx, and what says which 2xx it answers: the dialog's To tag
/// and the INVITE's CSeq number (a re-INVITE's 2xx is another one, §14.1; a fork's has
/// another tag, §13.2.2.4).
struct AckKept {
    target: Target,
    ack: Bytes,
    sent: Millis,
    to_tag: Box<str>,
    cseq: u32,
}

impl AckKept {
    fn answers(&self, response: &SipMessage) -> bool {
        response.to_tag() == Some(&*self.to_tag)
            && response.cseq().is_some_and(|c| c.seq == self.cseq)
    }
}

struct ServerEntry {
    tx: ServerTransaction,
    route: ResponseRoute,
    /// The request, until a non-INVITE transaction has its final answer: from then on it only
    /// absorbs retransmissions (Timer J, §17.2.2), for which the answer's bytes are enough.
    request: Option<Arc<SipMessage>>,
    /// Whether a final response was sent (the node answers each request once).
    answered: bool,
    /// The wake-up already in the timer heap, so that each change is pushed once.
    scheduled: Option<Millis>,
}

impl ClientEntry {
    /// Whether the transaction already had its final response (a retransmitted final, or a
    /// further 2xx from another fork, is not a new duration).
    fn tx_final_seen(&self) -> bool {
        matches!(
            self.tx.state(),
            super::transaction::ClientState::Completed
                | super::transaction::ClientState::Accepted
                | super::transaction::ClientState::Terminated
        )
    }
}

struct ClientEntry {
    tx: ClientTransaction,
    /// The request as sent, with the node's Via; of a non-INVITE transaction, until its final
    /// response (then Timer K only absorbs retransmissions of it, §17.1.2.2).
    request: Option<Arc<SipMessage>>,
    target: Target,
    /// The server transaction it serves (of a non-INVITE transaction, until its final
    /// response, which is relayed once).
    origin: Option<Origin>,
    /// The wake-up already in the timer heap.
    scheduled: Option<Millis>,
    /// When the request was first sent (for the transaction duration histogram).
    started: Instant,
    /// The stored message this request delivers (its recipient and key).
    delivery: Option<(Bytes, MessageKey)>,
}

/// Half of an MSRP session waiting for its other leg's far end.
struct PendingMedia {
    leg: MsrpLeg,
}

/// What a side's sender task writes: a request (or ACK) to a next hop, or a response where
/// its request came from (§18.2.2).
enum Outbound {
    To(Target, Bytes),
    Back(ResponseRoute, Bytes),
}

/// Answered server transactions kept (Timer J / L) per one the cap allows waiting: at the
/// default cap of 100,000, room for ~12,500 pager MESSAGEs a second over UDP.
const ANSWERED_PER_PENDING: usize = 4;

/// The core task's state.
pub struct Core {
    /// The time of the turn being handled (`now`).
    tick: Millis,
    /// The wall clock's text for the CPIM DateTime of what the node wraps.
    datetime: DateTimeText,
    parts: CoreParts,
    sides: [SideIo; 2],
    senders: [mpsc::Sender<Outbound>; 2],
    ids: RandomIds,
    // Entries boxed: a map growing moves two pointers per transaction, not the whole entry.
    servers: HashMap<Arc<ServerKey>, Box<ServerEntry>>,
    /// Server transactions not answered yet (what the 503 cap counts).
    unanswered: usize,
    clients: HashMap<Arc<ClientKey>, Box<ClientEntry>>,
    /// The transactions' wake-ups (stale ones are skipped when they fire).
    timers: Deadlines<TxRef>,
    media: HashMap<Bytes, PendingMedia>,
    relay_of: HashMap<Bytes, u64>,
    sessions: HashMap<u64, [Bytes; 2]>,
    next_relay_id: u64,
    /// The ACK the node sent for each session 2xx, resent when the 2xx is retransmitted
    /// (RFC 3261 §13.2.2.4), keyed by side and Call-ID, with when it was sent: kept 64*T1
    /// (the UAS's retransmission window, §13.3.1.4), not for the whole session (issue 9).
    acks: HashMap<(Side, String), AckKept>,
    draining: bool,
    /// Per side: the Call-ID of the OPTIONS probe in flight, and whether the last probe went
    /// unanswered (the next hop is unreachable).
    probes: [(Option<String>, bool); 2],
    /// Store-and-forward, when on.
    deferred: Option<Deferred>,
    /// Recording to the MSS (issue 8), and the core's own event queue for its deferred work.
    recorder: Option<(Arc<super::record::Recorder>, mpsc::Sender<CoreEvent>)>,
}

fn index(side: Side) -> usize {
    match side {
        Side::Cpm => 0,
        Side::Simple => 1,
    }
}

fn side_metric(side: Side) -> Side {
    side
}

/// Datagrams the core reads from one UDP socket in one turn of its loop before it looks at
/// its other inputs again (TCP messages, relay events, timers): bounds what one busy socket
/// delays them by.
const UDP_BATCH: usize = 32;

/// What woke the core for a turn of its loop.
enum Turn {
    Sip(Side, Option<Inbound>),
    /// A UDP socket of a side (its index) has datagrams to read.
    Udp(Side, usize),
    Event(Option<CoreEvent>),
    Timers,
    Probe,
    StoreTick,
}

/// What the core is told besides SIP.
pub enum CoreEvent {
    /// From the MSRP relay.
    Relay(RelayEvent),
    /// A store call finished.
    Store(StoreEvent),
    /// Stop taking new requests and end when transactions are done.
    Drain,
    /// Work deferred until the recording of a message was confirmed (SD 5.2.1.2.1).
    Resume(Box<dyn FnOnce(&mut Core) + Send>),
}

impl Core {
    /// A core over the two sides' I/O.
    pub fn new(parts: CoreParts, cpm: SideIo, simple: SideIo, queue_depth: usize) -> Self {
        let sender = |io: &SideIo, side: Side| {
            let (tx, mut rx) = mpsc::channel::<Outbound>(queue_depth.max(16));
            let transport = io.transport.clone();
            tokio::spawn(async move {
                while let Some(out) = rx.recv().await {
                    let result = match out {
                        Outbound::To(target, bytes) => transport.send(target, bytes).await,
                        Outbound::Back(route, bytes) => {
                            transport.send_response(&route, bytes).await
                        }
                    };
                    if let Err(e) = result {
                        tracing::warn!(?side, error = %e, "SIP send failed");
                    }
                }
            });
            tx
        };
        let senders = [sender(&cpm, Side::Cpm), sender(&simple, Side::Simple)];
        let mut parts = parts;
        let mut ids = RandomIds::new();
        let watcher = parts.store.as_ref().and_then(|p| {
            let side = if p.availability.registrar_on_cpm {
                Side::Cpm
            } else {
                Side::Simple
            };
            // The node subscribes as itself: its Contact on the registrar's side is also its
            // identity there (RFC 6665 §4.1.2: From names the subscriber).
            let contact = match side {
                Side::Cpm => &parts.addrs.cpm.contact,
                Side::Simple => &parts.addrs.simple.contact,
            };
            let cfg = WatcherConfig::from_config(&p.availability, contact, contact)?;
            let seed = parts.clock.now().0 ^ u64::from(std::process::id());
            let target = p
                .availability
                .registrar
                .as_deref()
                .and_then(registrar_target);
            Some((
                RegEventWatcher::new(cfg, seed, &mut ids, parts.clock.now()),
                side,
                target,
            ))
        });
        let contacts = [
            parts.addrs.cpm.contact.clone(),
            parts.addrs.simple.contact.clone(),
        ];
        let deferred = parts.store.take().map(|p| Deferred {
            drops: (p.config.on_msrp_drop == crate::config::MsrpDropPolicy::Store).then(|| {
                Arc::new(DropParts {
                    keeping: p.mailbox.keeping(),
                    contacts,
                    policies: [p.config.cpm.clone(), p.config.simple.clone()],
                    events: p.events.clone(),
                })
            }),
            schedule: Scheduler::new(ScheduleConfig {
                retry: p.retry,
                jitter: true,
                max_active: 256,
                max_users: 1_000_000,
                batch: 32,
            }),
            parts: p,
            puts: HashMap::default(),
            next_token: 1,
            expiry_checked: Millis(0),
            expiry_busy: false,
            sunk: HashMap::default(),
            watcher,
        });
        let tick = parts.clock.now();
        Core {
            tick,
            datetime: DateTimeText::default(),
            parts,
            sides: [cpm, simple],
            senders,
            ids,
            servers: HashMap::default(),
            unanswered: 0,
            clients: HashMap::default(),
            timers: Deadlines::new(),
            media: HashMap::default(),
            relay_of: HashMap::default(),
            sessions: HashMap::default(),
            next_relay_id: 1,
            acks: HashMap::default(),
            draining: false,
            probes: [(None, false), (None, false)],
            deferred,
            recorder: None,
        }
    }

    /// Record to the MSS through `recorder`; `events` is the core's own event queue.
    pub fn with_recorder(
        mut self,
        recorder: Arc<super::record::Recorder>,
        events: mpsc::Sender<CoreEvent>,
    ) -> Self {
        self.recorder = Some((recorder, events));
        self
    }

    /// Transactions in progress.
    pub fn transactions(&self) -> usize {
        self.servers.len() + self.clients.len()
    }

    /// Run until the control channel closes, or until draining and no client transaction is
    /// left. The transports' inbound channels are read here directly (no hand-over task).
    pub async fn run(
        mut self,
        mut cpm_in: mpsc::Receiver<Inbound>,
        mut simple_in: mpsc::Receiver<Inbound>,
        mut cpm_udp: UdpReceiver,
        mut simple_udp: UdpReceiver,
        mut events: mpsc::Receiver<CoreEvent>,
    ) {
        let (mut cpm_open, mut simple_open) = (true, true);
        // The first probe after one interval: a node just started has not had time to fail.
        let mut probe = self
            .parts
            .probe_interval
            .map(|every| tokio::time::interval_at(tokio::time::Instant::now() + every, every));
        // Store-and-forward housekeeping: retries due, expired messages.
        let mut store_tick = self
            .deferred
            .as_ref()
            .map(|_| tokio::time::interval(std::time::Duration::from_millis(100)));
        self.tick = self.parts.clock.now();
        self.resume_stored();
        // One timer for the transactions' wake-ups, moved only when the earliest deadline
        // changes: a new `sleep` each turn registered and dropped a timer-wheel entry (and read
        // the clock twice) for every message.
        let mut wake = std::pin::pin!(tokio::time::sleep(std::time::Duration::ZERO));
        let mut wake_at: Option<Millis> = None;
        loop {
            let store_tick_fut = async {
                match store_tick.as_mut() {
                    Some(t) => {
                        t.tick().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let probe_tick = async {
                match probe.as_mut() {
                    Some(p) => {
                        p.tick().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let deadline = self.timers.peek();
            if deadline != wake_at {
                if let Some(at) = deadline {
                    let wait = at.0.saturating_sub(self.parts.clock.now().0);
                    wake.as_mut().reset(
                        tokio::time::Instant::now() + std::time::Duration::from_millis(wait),
                    );
                }
                wake_at = deadline;
            }
            let event = tokio::select! {
                inbound = cpm_in.recv(), if cpm_open => Turn::Sip(Side::Cpm, inbound),
                inbound = simple_in.recv(), if simple_open => Turn::Sip(Side::Simple, inbound),
                i = cpm_udp.ready(), if cpm_open => Turn::Udp(Side::Cpm, i),
                i = simple_udp.ready(), if simple_open => Turn::Udp(Side::Simple, i),
                ev = events.recv() => Turn::Event(ev),
                () = &mut wake, if wake_at.is_some() => {
                    // Fired: set again from the wake-ups on the next turn.
                    wake_at = None;
                    Turn::Timers
                }
                () = probe_tick => Turn::Probe,
                () = store_tick_fut => Turn::StoreTick,
            };
            // The clock read once a turn: what the turn does happens "now" (to the millisecond).
            self.tick = self.parts.clock.now();
            match event {
                Turn::Sip(side, Some(inbound)) => self.on_sip(side, inbound),
                Turn::Udp(side, i) => {
                    let udp = match side {
                        Side::Cpm => &mut cpm_udp,
                        Side::Simple => &mut simple_udp,
                    };
                    udp.drain(i, UDP_BATCH, |inbound| {
                        self.on_sip(side, inbound);
                        self.tick = self.parts.clock.now();
                    });
                }
                Turn::Sip(side, None) => match side {
                    Side::Cpm => cpm_open = self.listener_down(side),
                    Side::Simple => simple_open = self.listener_down(side),
                },
                Turn::Event(Some(CoreEvent::Relay(ev))) => self.on_relay(ev),
                Turn::Event(Some(CoreEvent::Store(ev))) => self.on_store(ev),
                Turn::Event(Some(CoreEvent::Resume(f))) => f(&mut self),
                Turn::Event(Some(CoreEvent::Drain)) => {
                    self.draining = true;
                    self.update_readiness();
                }
                Turn::Event(None) => break,
                Turn::Timers => self.on_timers(),
                Turn::Probe => self.probe(),
                Turn::StoreTick => self.on_store_tick(),
            }
            if self.draining && self.clients.is_empty() {
                break;
            }
        }
    }

    /// Send an OPTIONS to each side's next hop (RFC 3261 §11: any final answer, even 405,
    /// shows the peer is there), unless the last one is still in flight.
    fn probe(&mut self) {
        for side in [Side::Cpm, Side::Simple] {
            let i = index(side);
            let Some(hop) = self.sides[i].next_hop else {
                continue;
            };
            if self.probes[i].0.is_some() {
                continue;
            }
            let call_id = format!("probe-{}", self.fresh());
            let tag = self.fresh();
            let uri = format!("sip:{}", hop.addr);
            let local = &self.parts.addrs.side(side).contact;
            let Ok(mut m) = SipMessage::request(rsip::Method::Options, &uri) else {
                continue;
            };
            let built = [
                ("Max-Forwards", "70".to_string()),
                ("From", format!("<{local}>;tag={tag}")),
                ("To", format!("<{uri}>")),
                ("Call-ID", call_id.clone()),
                ("CSeq", "1 OPTIONS".to_string()),
            ]
            .iter()
            .all(|(n, v)| m.push_header(n, v).is_ok());
            if built {
                self.probes[i].0 = Some(call_id);
                self.send_request(side, m, None);
            }
        }
    }

    fn probe_answered(&mut self, side: Side, call_id: &str) {
        let p = &mut self.probes[index(side)];
        if p.0.as_deref() == Some(call_id) {
            *p = (None, false);
            self.update_readiness();
        }
    }

    fn probe_failed(&mut self, side: Side, call_id: &str) {
        let p = &mut self.probes[index(side)];
        if p.0.as_deref() == Some(call_id) {
            if !p.1 {
                tracing::error!(?side, "the next hop does not answer OPTIONS: not ready");
            }
            *p = (None, true);
            self.update_readiness();
        }
    }

    /// Ready when both sides listen, every next hop answered its last probe, and the node is
    /// not stopping.
    fn update_readiness(&mut self) {
        let ready = !self.draining
            && self.sides.iter().all(|s| s.transport.is_listening())
            && self.probes.iter().all(|(_, failed)| !failed);
        if self.parts.readiness.is_ready() != ready {
            self.parts.readiness.set(ready);
            metrics::ready(ready);
        }
    }

    /// A side's transport stopped delivering (its listeners are gone): the node is not ready
    /// any more (`/readyz` 503) and says so once.
    fn listener_down(&mut self, side: Side) -> bool {
        if !self.draining {
            tracing::error!(?side, "SIP listeners of a side are down: not ready");
        }
        self.parts.readiness.set(false);
        metrics::ready(false);
        false
    }

    /// The time of the turn being handled (read once a turn by `run`).
    fn now(&self) -> Millis {
        self.tick
    }

    fn fresh(&mut self) -> String {
        String::from_utf8_lossy(&self.ids.fresh_id()).into_owned()
    }

    fn on_sip(&mut self, side: Side, inbound: Inbound) {
        tracing::trace!(?side, source = %inbound.source, transport = ?inbound.transport, "SIP in");
        // Time inside the node: from the message taken to what it caused queued for sending.
        let started = Instant::now();
        let kind = if inbound.message.is_request() {
            translation_kind(&inbound.message)
        } else {
            metrics::TranslationKind::Response
        };
        if inbound.message.is_request() {
            self.on_request(side, inbound);
        } else {
            self.on_response(side, inbound.message);
        }
        metrics::processing_duration(kind, started.elapsed());
    }

    // ---- requests -------------------------------------------------------------------------

    fn on_request(&mut self, side: Side, inbound: Inbound) {
        // The top Via read once: where the responses go and the transaction's sent-by.
        let (route, sent_by) = {
            let via = inbound
                .message
                .header("Via")
                .and_then(super::transport::parse_via);
            (
                inbound.response_route_from(via.as_ref()),
                sent_by(via.as_ref()),
            )
        };
        let transport = inbound.transport;
        let msg = inbound.message;
        let Some(method) = msg.method().copied() else {
            return;
        };
        metrics::sip_request(
            side_metric(side),
            metrics::Direction::In,
            metrics::Method::from(method),
        );
        let now = self.now();
        let is_ack = method == rsip::Method::Ack;
        let key = Arc::new(ServerKey::new(
            side,
            transaction_branch(&msg),
            sent_by,
            if is_ack {
                "INVITE"
            } else {
                method_name(&method)
            },
        ));
        if let Some(entry) = self.servers.get_mut(&key) {
            // A retransmission, or the ACK of a non-2xx answer (§17.2.3).
            if !is_ack {
                metrics::retransmission(
                    side_metric(side),
                    metrics::Direction::In,
                    metrics::Method::from(method),
                );
            }
            let delivery = entry.tx.receive_request(is_ack, now);
            self.flush_server(&key);
            if !(is_ack && delivery == Delivery::ToUser) {
                return;
            }
        }
        if method == rsip::Method::Bye
            && let Some(call_id) = msg.call_id()
        {
            // The dialog ends: the ACK kept for its 2xx retransmissions is not needed any more.
            self.acks.remove(&(side, call_id.to_string()));
        }
        if is_ack {
            // The ACK of a 2xx is its own transaction-less request (§17.1.1.3, §13.2.2.4).
            self.translate_request(side, &msg, None);
            return;
        }
        // The cap counts the requests still waiting for their answer. An answered non-INVITE
        // transaction only absorbs retransmissions for Timer J's 32 s (§17.2.2), a few hundred
        // bytes: counted against the cap, they made the node refuse pager traffic above
        // ~3,100 MESSAGEs a second with the default 100,000. They have their own, larger bound.
        let max = self.parts.max_transactions;
        if self.draining
            || self.unanswered >= max
            || self.servers.len() >= max.saturating_mul(ANSWERED_PER_PENDING)
        {
            self.reply_stateless(side, &route, &msg, 503, "Service Unavailable");
            return;
        }
        let kind = if method == rsip::Method::Invite {
            Kind::Invite
        } else {
            Kind::NonInvite
        };
        // §17.2.1: the B2BUA's answer waits on the other network; 100 Trying at once.
        let trying = (kind == Kind::Invite).then(|| msg.response_to(100, "Trying").serialize());
        let timers = timer_config(self.sides[index(side)].timers, transport);
        let tx = ServerTransaction::new(kind, timers, trying);
        let msg = Arc::new(msg);
        let replaced = self.servers.insert(
            Arc::clone(&key),
            Box::new(ServerEntry {
                tx,
                route,
                request: Some(Arc::clone(&msg)),
                answered: false,
                scheduled: None,
            }),
        );
        if replaced.is_none_or(|old| old.answered) {
            self.unanswered += 1;
        }
        self.flush_server(&key);
        if self.availability_request(&key, method, &msg) || self.answered_for_taken_over(&key, &msg)
        {
            return;
        }
        let origin = (key, Arc::clone(&msg));
        self.translate_request(side, &msg, Some(origin));
    }

    /// `origin`: the server transaction `msg` came on (none for the node's own requests).
    fn translate_request(&mut self, from: Side, msg: &SipMessage, origin: Option<Origin>) {
        let now = self.now();
        let result = {
            let view = self.parts.table.view(now);
            let mut env = Env {
                now,
                ids: &mut self.ids,
                datetime: self.datetime.at(SystemTime::now()),
            };
            translate::sip_request(
                msg,
                from,
                &view,
                &self.parts.mappings,
                &self.parts.addrs,
                &mut env,
            )
        };
        let kind = translation_kind(msg);
        let outcome = match result {
            Ok(o) => o,
            Err(e) => {
                metrics::translation_failure(
                    side_metric(from),
                    kind,
                    metrics::FailureReason::of(&e),
                );
                // One line per failure: side, kind, reason, the answer; never a body.
                tracing::info!(
                    side = ?from,
                    kind = kind.as_str(),
                    reason = metrics::FailureReason::of(&e).as_str(),
                    status = e.status(),
                    error = %e,
                    "request refused"
                );
                if let Some((key, _)) = &origin {
                    self.answer(key, e.status(), &reason_of(&e), None);
                }
                return;
            }
        };
        metrics::translation(side_metric(from), kind);
        if self.parts.table.apply(&outcome.changes, now).is_err() {
            // A refused session leaves none of its legs behind: they would hold the table's
            // room until they expire (the conversation entry stays; it is valid on its own).
            let undo: Vec<Change> = outcome
                .changes
                .iter()
                .filter_map(|c| match c {
                    Change::Insert(e) if matches!(e.key(), Key::Dialog(_) | Key::Msrp(_)) => {
                        Some(Change::Remove(e.key()))
                    }
                    _ => None,
                })
                .collect();
            if msg.method() == Some(&rsip::Method::Invite) && msg.to_tag().is_none() {
                let _ = self.parts.table.apply(&undo, now);
            }
            metrics::translation_failure(
                side_metric(from),
                kind,
                metrics::FailureReason::TableFull,
            );
            if let Some((key, _)) = &origin {
                // RFC 3261 §21.5.4: overloaded; try again later.
                self.answer(key, 503, "Service Unavailable", Some(("Retry-After", "5")));
            }
            return;
        }
        if let Some((r, events)) = &self.recorder
            && let Some(wait) = r.request(from, msg, &outcome)
        {
            // SD 5.2.1.2.1: recorded before it is delivered (the wait is bounded).
            let events = events.clone();
            tokio::spawn(async move {
                wait.await;
                let resume = move |core: &mut Core| core.apply_outcome(outcome, origin);
                let _ = events.send(CoreEvent::Resume(Box::new(resume))).await;
            });
            return;
        }
        self.apply_outcome(outcome, origin);
    }

    /// Send what a translation produced; `origin` is the server transaction it answers.
    fn apply_outcome(&mut self, outcome: Outcome, origin: Option<Origin>) {
        self.forget_media(&outcome.changes);
        for leg in outcome.msrp {
            self.on_msrp_leg(leg);
        }
        if let (Some(reply), Some((key, _))) = (outcome.reply, &origin) {
            self.answer(key, reply.status, reply.reason, None);
        }
        for (to, m) in outcome.send {
            if m.is_request() {
                self.send_request(to, m, origin.clone());
            } else if let Some((key, _)) = &origin {
                let status = m.status_code().unwrap_or(500);
                self.respond(key, status, m);
            }
        }
    }

    /// Send a request the translator built to side `to`: with the node's Via, through a
    /// client transaction (ACK: without one, §17.1.1.3; CANCEL: on its INVITE's branch, §9.1).
    fn send_request(
        &mut self,
        to: Side,
        m: SipMessage,
        origin: Option<Origin>,
    ) -> Option<Arc<ClientKey>> {
        self.send_request_to(to, m, origin, None)
    }

    /// [`Self::send_request`] to `target` rather than the side's next hop when given.
    fn send_request_to(
        &mut self,
        to: Side,
        mut m: SipMessage,
        origin: Option<Origin>,
        target: Option<Target>,
    ) -> Option<Arc<ClientKey>> {
        let method = m.method().copied()?;
        if m.call_id().is_some_and(|c| {
            self.deferred
                .as_ref()
                // The common case (no session stood in for) costs no allocation.
                .is_some_and(|d| !d.sunk.is_empty() && d.sunk.contains_key(&(to, c.to_string())))
        }) {
            self.in_sunk_dialog(to, &m, method, origin);
            return None;
        }
        let io = &self.sides[index(to)];
        let Some(target) = target.or(io.next_hop) else {
            tracing::warn!(?to, "no next hop configured: request not sent");
            if let Some((key, _)) = origin {
                self.answer(&key, 503, "Service Unavailable", None);
            }
            return None;
        };
        let sent_by = io.sent_by;
        let timers = timer_config(io.timers, target.transport);
        let branch = if method == rsip::Method::Cancel {
            // The CANCEL goes on the branch of the INVITE it cancels (§9.1).
            let call_id = m.call_id().unwrap_or_default().to_string();
            match self.clients.iter().find(|(k, c)| {
                k.side == to
                    && k.method == "INVITE"
                    && c.request
                        .as_ref()
                        .is_some_and(|r| r.call_id() == Some(call_id.as_str()))
            }) {
                Some((k, _)) => k.branch.clone(),
                None => return None,
            }
        } else {
            // RFC 3261 §8.1.1.7: the magic cookie, then the fresh id without its dashes.
            let id = self.ids.fresh_id();
            let mut branch = String::with_capacity(7 + id.len());
            branch.push_str("z9hG4bK");
            branch.extend(id.iter().filter(|b| **b != b'-').map(|b| char::from(*b)));
            branch
        };
        if m.insert_header(0, "Via", &request_via(target.transport, sent_by, &branch))
            .is_err()
        {
            return None;
        }
        metrics::sip_request(
            side_metric(to),
            metrics::Direction::Out,
            metrics::Method::from(method),
        );
        let bytes = m.serialize();
        if method == rsip::Method::Ack {
            if let Some(call_id) = m.call_id() {
                // Bounded: one per session; at the session limit half of them are forgotten at
                // once (a 2xx retransmitted for one of those then goes unanswered, and the far
                // end's timer ends it, §13.3.1.4).
                if self.acks.len() >= self.parts.max_transactions {
                    let forget: Vec<_> = self
                        .acks
                        .keys()
                        .take(self.acks.len() / 2)
                        .cloned()
                        .collect();
                    for k in forget {
                        self.acks.remove(&k);
                    }
                }
                let now = self.now();
                let key = (to, call_id.to_string());
                self.timers.push(
                    now,
                    now.after(io.timers.t1_ms.saturating_mul(64)),
                    TxRef::AckKept(Box::new(key.clone())),
                );
                let kept = AckKept {
                    target,
                    ack: bytes.clone(),
                    sent: now,
                    to_tag: m.to_tag().unwrap_or_default().into(),
                    cseq: m.cseq().map_or(0, |c| c.seq),
                };
                self.acks.insert(key, kept);
            }
            self.transmit(to, target, bytes);
            return None;
        }
        if method == rsip::Method::Bye
            && let Some(call_id) = m.call_id()
        {
            self.acks.remove(&(to, call_id.to_string()));
        }
        let kind = if method == rsip::Method::Invite {
            Kind::Invite
        } else {
            Kind::NonInvite
        };
        let key = Arc::new(ClientKey::new(to, branch, method_name(&method)));
        let tx = ClientTransaction::new(kind, bytes, timers, self.now());
        self.clients.insert(
            Arc::clone(&key),
            Box::new(ClientEntry {
                tx,
                request: Some(Arc::new(m)),
                target,
                origin,
                scheduled: None,
                started: Instant::now(),
                delivery: None,
            }),
        );
        self.flush_client(&key);
        Some(key)
    }

    // ---- responses ------------------------------------------------------------------------

    fn on_response(&mut self, side: Side, msg: SipMessage) {
        let Some(status) = msg.status_code() else {
            return;
        };
        let Some(cseq) = msg.cseq() else { return };
        metrics::sip_response(
            side_metric(side),
            metrics::Direction::In,
            metrics::Method::from_token(cseq.method.as_bytes()),
            status,
        );
        // A CSeq method the node never sends matches none of its transactions.
        let Ok(method) = cseq.method.parse::<rsip::Method>() else {
            return;
        };
        let key = ClientKey::new(
            side,
            msg.top_via_branch().unwrap_or_default().to_string(),
            method_name(&method),
        );
        if key.method == "OPTIONS" && status >= 200 {
            self.probe_answered(side, msg.call_id().unwrap_or_default());
        }
        let now = self.now();
        let Some((key, entry)) = self
            .clients
            .get_key_value(&key)
            .map(|(k, _)| Arc::clone(k))
            .and_then(|k| self.clients.get_mut(&k).map(|e| (k, e)))
        else {
            // A 2xx retransmitted after its transaction ended: the ACK is resent (§13.2.2.4).
            if key.method == "INVITE" {
                self.ack_again(side, status, &msg);
            }
            return;
        };
        let first_final = status >= 200 && !entry.tx_final_seen();
        // A non-INVITE transaction relays one final response: what it needs for that is taken
        // (no copies kept for the retransmissions Timer K absorbs); an INVITE keeps them for
        // further 2xx (forks) and its ACK.
        let (request, origin) = if first_final && key.method != "INVITE" {
            (entry.request.take(), entry.origin.take())
        } else {
            (entry.request.clone(), entry.origin.clone())
        };
        let delivered = entry.delivery.clone();
        if first_final {
            metrics::transaction_duration(
                side_metric(side),
                metrics::Method::from_token(key.method.as_bytes()),
                entry.started.elapsed(),
            );
        }
        let delivery = entry.tx.receive_response(status, now, || {
            request
                .as_deref()
                .map(|r| ack_for(r, &msg).serialize())
                .unwrap_or_default()
        });
        // Over TCP the transaction may end at once (Timer K is zero): its origin was taken.
        self.flush_client(&key);
        if delivery != Delivery::ToUser || key.method == "CANCEL" {
            // CANCEL's answer is hop by hop: the node answered the caller's CANCEL itself.
            return;
        }
        // A 2xx the node has ACKed already, passed up again by the INVITE transaction
        // (Accepted, RFC 6026 §8.4): its ACK went missing, so the node, the UAC of this leg,
        // sends it again (RFC 3261 §13.2.2.4); the caller has its own 2xx and ACK.
        if key.method == "INVITE" && self.ack_again(side, status, &msg) {
            return;
        }
        if status >= 200
            && let Some((user, stored)) = delivered
        {
            self.delivery_answered(side, &user, &stored, status);
            return;
        }
        if key.method == "SUBSCRIBE"
            && origin.is_none()
            && let Some((w, _, _)) = self.deferred.as_mut().and_then(|d| d.watcher.as_mut())
        {
            w.on_response(&msg, now);
            self.drive_watcher();
            return;
        }
        self.relay_response(origin, &msg, request.as_deref());
    }

    /// Sends again the ACK kept for the INVITE 2xx `msg` from `side` (RFC 3261 §13.2.2.4);
    /// false when `msg` is no such 2xx or no ACK is kept for it.
    fn ack_again(&mut self, side: Side, status: u16, msg: &SipMessage) -> bool {
        let Some(kept) = msg
            .call_id()
            .filter(|_| (200..300).contains(&status))
            .and_then(|call_id| self.acks.get(&(side, call_id.to_string())))
            .filter(|kept| kept.answers(msg))
        else {
            return false;
        };
        let (target, ack) = (kept.target, kept.ack.clone());
        self.transmit(side, target, ack);
        true
    }

    /// The far side's answer `far` to the client transaction `key`, through the translator
    /// to the server transaction it serves.
    fn relay_response(
        &mut self,
        origin: Option<Origin>,
        far: &SipMessage,
        sent: Option<&SipMessage>,
    ) {
        let Some((origin_key, received)) = origin else {
            // The node's own request (a BYE it sent, a hung-up fork): nothing to relay.
            return;
        };
        if let (Some(sent), Some(status)) = (sent, far.status_code())
            && self.store_instead(&origin_key, &received, sent, status)
        {
            return;
        }
        let stand_in = match (sent, far.status_code()) {
            (Some(sent), Some(status)) => {
                self.answer_for_callee(sent, status, origin_key.side.other())
            }
            _ => None,
        };
        let far = stand_in.as_ref().unwrap_or(far);
        // A message kept for later is not a failed delivery: its record stays (issue 8).
        if let (Some((r, _)), Some(status)) = (&self.recorder, far.status_code()) {
            r.delivery_result(&received, status);
        }
        let now = self.now();
        let result = {
            let view = self.parts.table.view(now);
            let mut env = Env {
                now,
                ids: &mut self.ids,
                datetime: self.datetime.at(SystemTime::now()),
            };
            session::session_response(
                &received,
                origin_key.side,
                far,
                &view,
                &self.parts.mappings,
                &self.parts.addrs,
                &mut env,
            )
        };
        match result {
            Ok(outcome) => {
                metrics::translation(
                    side_metric(origin_key.side),
                    metrics::TranslationKind::Response,
                );
                if self.parts.table.apply(&outcome.changes, now).is_err() {
                    metrics::translation_failure(
                        side_metric(origin_key.side),
                        metrics::TranslationKind::Response,
                        metrics::FailureReason::TableFull,
                    );
                }
                self.apply_outcome(outcome, Some((origin_key, received)));
            }
            Err(e) => {
                metrics::translation_failure(
                    side_metric(origin_key.side),
                    metrics::TranslationKind::Response,
                    metrics::FailureReason::of(&e),
                );
                // The far side's answer cannot be relayed as it is: the caller gets a failure
                // (502 Bad Gateway, RFC 3261 §21.5.3) rather than silence.
                self.answer(&origin_key, 502, "Bad Gateway", None);
            }
        }
    }

    // ---- store-and-forward (issue 7) -------------------------------------------------------

    /// The next hop answered the pager MESSAGE `sent` (translated from `received`) with
    /// `status`: when the policy of its side says the user is not available, keep the message
    /// and answer the sender 202 once it is durably stored (RFC 3428 §7: 202 says accepted,
    /// not delivered). Returns whether it took the answer over.
    fn store_instead(
        &mut self,
        origin_key: &Arc<ServerKey>,
        received: &SipMessage,
        sent: &SipMessage,
        status: u16,
    ) -> bool {
        let to = origin_key.side.other();
        let Some(d) = self.deferred.as_mut() else {
            return false;
        };
        if !deferred::should_store(sent, status, d.policy(to)) {
            return false;
        }
        if d.puts.len() >= d.parts.config.max_in_flight {
            metrics::store_operation(metrics::StoreOp::Put, metrics::StoreResult::Refused);
            // RFC 3261 §21.5.4: the node cannot take more now.
            self.answer(
                origin_key,
                503,
                "Service Unavailable",
                Some(("Retry-After", "5")),
            );
            return true;
        }
        let now = self.tick;
        let origin = crate::wire::cpim::Cpim::parse(sent.body().clone())
            .ok()
            .and_then(|c| c.imdn_message_id().cloned())
            .and_then(|id| self.parts.table.view(now).message(&id).map(|o| (id, o)));
        let unix_now = crate::store::unix_ms_now();
        let message = deferred::stored_message(
            sent,
            to,
            origin.as_ref().map(|(_, o)| o),
            received,
            unix_now,
            d.policy(to),
        );
        let user = message.recipient.clone();
        let token = d.next_token;
        d.next_token += 1;
        d.puts.insert(token, origin_key.clone());
        let store = d.parts.store.clone();
        let events = d.parts.events.clone();
        // The origin (where its notifications go) lives as long again as the message: a
        // display notification may come well after delivery.
        let origin_until = message
            .expires_at_unix_ms
            .saturating_add(message.expires_at_unix_ms.saturating_sub(unix_now));
        tokio::spawn(async move {
            let mut result = store.put(message).await.map(|_| ());
            if result.is_ok()
                && let Some((id, o)) = origin
            {
                result = store.put_origin(id, o, origin_until).await;
            }
            let _ = events
                .send(CoreEvent::Store(StoreEvent::Put {
                    token,
                    user,
                    result,
                }))
                .await;
        });
        true
    }

    fn on_store(&mut self, ev: StoreEvent) {
        let now = self.now();
        let Some(d) = self.deferred.as_mut() else {
            return;
        };
        let actions = match ev {
            StoreEvent::Put {
                token,
                user,
                result,
            } => {
                let Some(key) = d.puts.remove(&token) else {
                    return;
                };
                match result {
                    Ok(()) => {
                        metrics::store_operation(metrics::StoreOp::Put, metrics::StoreResult::Ok);
                        d.schedule.stored(user.clone(), now);
                        self.answer(&key, 202, "Accepted", None);
                        self.watch_user(&user);
                    }
                    Err(e) => {
                        metrics::store_operation(
                            metrics::StoreOp::Put,
                            metrics::StoreResult::Failed,
                        );
                        tracing::warn!(error = %e, "message for an unavailable user not stored");
                        let status = e.sip_status();
                        let retry = (status == 503).then_some(("Retry-After", "5"));
                        self.answer(&key, status, &e.to_string(), retry);
                    }
                }
                return;
            }
            StoreEvent::Fetched { user, result } => match result {
                Ok(list) => {
                    // Where their notifications go, for messages whose table entry is gone (a
                    // restart, or a long wait): back from the store (SD 5.2.1.1, issue 7).
                    let changes: Vec<Change> = list
                        .iter()
                        .filter_map(|(p, o)| {
                            let id = p.message.message_id.clone()?;
                            let o = o.clone()?;
                            Some(Change::Insert(Entry::Message(id, Box::new(o))))
                        })
                        .collect();
                    if self.parts.table.apply(&changes, now).is_err() {
                        metrics::translation_failure(
                            Side::Cpm,
                            metrics::TranslationKind::Pager,
                            metrics::FailureReason::TableFull,
                        );
                    }
                    let list = list.into_iter().map(|(p, _)| p).collect();
                    d.schedule.fetched(&user, Ok(list), now)
                }
                Err(e) => {
                    metrics::store_operation(metrics::StoreOp::Read, metrics::StoreResult::Failed);
                    tracing::warn!(error = %e, "stored messages not read");
                    d.schedule.fetched(&user, Err(()), now)
                }
            },
            StoreEvent::Acked { user, ok } => {
                metrics::store_operation(
                    metrics::StoreOp::Remove,
                    if ok {
                        metrics::StoreResult::Ok
                    } else {
                        metrics::StoreResult::Failed
                    },
                );
                d.schedule.acked(&user, ok, now)
            }
            StoreEvent::Expired(list) => {
                d.expiry_busy = false;
                for p in list {
                    metrics::stored_expired();
                    self.give_up(&p);
                }
                return;
            }
            StoreEvent::Kept { user } => {
                d.schedule.stored(user.clone(), now);
                self.watch_user(&user);
                return;
            }
            StoreEvent::LegDropped { id, side, reason } => {
                self.leg_dropped(id, side, &reason);
                return;
            }
            StoreEvent::Resume(users) => {
                let mut actions = Vec::new();
                for u in users {
                    actions.extend(d.schedule.resume(u, now));
                }
                actions
            }
        };
        self.run_store_actions(actions);
    }

    /// Every 100 ms: retries due, and (each `expiry_check_ms`) the messages that expired.
    fn on_store_tick(&mut self) {
        let now = self.now();
        let Some(d) = self.deferred.as_mut() else {
            return;
        };
        let actions = d.schedule.on_time(now);
        let watcher_due = d
            .watcher
            .as_ref()
            .and_then(|(w, _, _)| w.poll_timeout())
            .is_some_and(|t| t <= now);
        if !d.expiry_busy
            && now.0.saturating_sub(d.expiry_checked.0) >= d.parts.config.expiry_check_ms
        {
            d.expiry_checked = now;
            d.expiry_busy = true;
            let store = d.parts.store.clone();
            let events = d.parts.events.clone();
            tokio::spawn(async move {
                let list = match store.take_expired(crate::store::unix_ms_now(), 256).await {
                    Ok(list) => list,
                    Err(e) => {
                        tracing::warn!(error = %e, "expired messages not read");
                        Vec::new()
                    }
                };
                let _ = events
                    .send(CoreEvent::Store(StoreEvent::Expired(list)))
                    .await;
            });
        }
        self.run_store_actions(actions);
        if watcher_due {
            self.drive_watcher();
        }
    }

    /// At start: every user with messages waiting gets a delivery attempt (a node restarted
    /// does not wait for their next registration).
    fn resume_stored(&mut self) {
        let Some(d) = self.deferred.as_ref() else {
            return;
        };
        let store = d.parts.store.clone();
        let events = d.parts.events.clone();
        tokio::spawn(async move {
            let mut after = None;
            // Bounded: 10,000 pages of 256 users, or attempts while the store opens.
            for _ in 0..10_000 {
                match store.users_with_pending(after.clone(), 256).await {
                    Ok(users) if users.is_empty() => break,
                    Ok(users) => {
                        after = users.last().cloned();
                        if events
                            .send(CoreEvent::Store(StoreEvent::Resume(users)))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    // A store still being opened (Redis down at start): try again.
                    Err(StoreError::Unavailable(_)) if !events.is_closed() => {
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "stored users not read at start");
                        break;
                    }
                }
            }
        });
    }

    /// The callee's network answered the INVITE `sent` with `status`: when its policy says the
    /// callee is not available, the node answers for them (issue 7): a 200 whose SDP names the
    /// mailbox's MSRP endpoint, returned in place of the far answer, so the session is set up
    /// as usual and its messages are kept. `None`: relay the far answer as it is.
    fn answer_for_callee(
        &mut self,
        sent: &SipMessage,
        status: u16,
        side: Side,
    ) -> Option<SipMessage> {
        if sent.method() != Some(&rsip::Method::Invite) || sent.to_tag().is_some() {
            return None;
        }
        let call_id = sent.call_id()?.to_string();
        let contact = match side {
            Side::Cpm => self.parts.addrs.cpm.contact.clone(),
            Side::Simple => self.parts.addrs.simple.contact.clone(),
        };
        let sid = Bytes::from(self.fresh().replace('-', ""));
        let tag = self.fresh();
        // SDP o= sess-id: a timestamp, as RFC 4566 §5.2 suggests.
        let id = crate::store::unix_ms_now();
        let d = self.deferred.as_mut()?;
        if !d.policy(side).is_unavailable(status) || d.sunk.len() >= self.parts.max_transactions {
            return None;
        }
        let session = deferred::MailboxSession::of(sent, side, &contact, d.policy(side));
        let path = d.parts.mailbox.uri(&sid).to_string();
        if !d.parts.mailbox.expect(sid.clone(), session) {
            return None;
        }
        d.sunk.insert((side, call_id), sid);
        let mut ok = sent.response_to(200, "OK");
        let to_value = sent.header("To")?;
        let tagged = with_tag(to_value, Some(&tag)).ok()?;
        ok.set_header("To", &tagged).ok()?;
        ok.push_header("Contact", &format!("<{contact}>")).ok()?;
        ok.set_body_with_type(
            Some("application/sdp"),
            deferred::mailbox_answer(sent.body(), &path, id),
        )
        .ok()?;
        tracing::info!(
            ?side,
            status,
            "callee not available: the node answers and keeps the session's messages"
        );
        Some(ok)
    }

    /// A request in a dialog the mailbox stands in for: answered here as the callee would
    /// (ACK: nothing; BYE: 200 and the mailbox forgets it; re-INVITE: 488, the session stays as
    /// it is, RFC 3261 §14.2; anything else: 200).
    fn in_sunk_dialog(
        &mut self,
        to: Side,
        m: &SipMessage,
        method: rsip::Method,
        origin: Option<Origin>,
    ) {
        let status = match method {
            rsip::Method::Ack => return,
            rsip::Method::Invite => 488,
            _ => 200,
        };
        // The mailbox forgets the session itself once the relay's connection closes (what
        // was queued before the BYE is still kept).
        if method == rsip::Method::Bye
            && let Some(d) = self.deferred.as_mut()
            && let Some(c) = m.call_id()
        {
            d.sunk.remove(&(to, c.to_string()));
        }
        let resp = m.response_to(
            status,
            if status == 200 {
                "OK"
            } else {
                "Not Acceptable Here"
            },
        );
        self.relay_response(origin, &resp, None);
    }

    /// The MSRP leg `side` of relay session `id` dropped and its messages are kept (issue 7):
    /// BYE to that user (RFC 3261 §15.1.1); their dialog is the node's from now on, so the
    /// other user's session goes on with the node as its peer until they end it.
    fn leg_dropped(&mut self, id: u64, side: Side, reason: &str) {
        let Some(sids) = self.sessions.get(&id).cloned() else {
            return;
        };
        let now = self.now();
        let found = {
            let view = self.parts.table.view(now);
            sids.iter().find_map(|s| {
                let m = view.msrp(s).filter(|m| m.side == side)?;
                let text = format!("{reason}; the node keeps the session's messages");
                let outcome = session::hang_up_leg(s, &view, &self.parts.mappings, &text).ok();
                Some((s.clone(), m.call_id, outcome))
            })
        };
        let Some((sid, call_id, outcome)) = found else {
            return;
        };
        tracing::info!(?side, %reason, "MSRP leg dropped: BYE to that user, messages kept");
        if let Some(outcome) = outcome {
            self.apply_outcome(outcome, None);
        }
        if let Some(d) = self.deferred.as_mut()
            && d.sunk.len() < self.parts.max_transactions
        {
            d.sunk
                .insert((side, String::from_utf8_lossy(&call_id).into_owned()), sid);
        }
    }

    /// A request from the far end of a dialog the node took over (its MSRP leg dropped): the
    /// node answers (BYE 200, RFC 3261 §15.1.2; anything else 481, the dialog is over for
    /// them). Returns whether it was one.
    fn answered_for_taken_over(&mut self, key: &Arc<ServerKey>, msg: &SipMessage) -> bool {
        let sunk = msg.call_id().is_some_and(|c| {
            self.deferred.as_ref().is_some_and(|d| {
                !d.sunk.is_empty() && d.sunk.contains_key(&(key.side, c.to_string()))
            })
        });
        if !sunk {
            return false;
        }
        if msg.method() == Some(&rsip::Method::Bye) {
            self.answer(key, 200, "OK", None);
        } else {
            self.answer(key, 481, "Call/Transaction Does Not Exist", None);
        }
        true
    }

    /// A NOTIFY of the node's reg event subscriptions (RFC 3680) or a third-party REGISTER
    /// (3GPP TS 24.229 §5.4.1.7): answered here, and what it says of users applied. Returns
    /// whether it was one (else it goes to the translator).
    fn availability_request(
        &mut self,
        key: &Arc<ServerKey>,
        method: rsip::Method,
        msg: &SipMessage,
    ) -> bool {
        let now = self.now();
        let Some(d) = self.deferred.as_mut() else {
            return false;
        };
        let (resp, events) = match method {
            rsip::Method::Notify => {
                let Some((w, _, _)) = d.watcher.as_mut().filter(|(w, _, _)| w.owns(msg)) else {
                    return false;
                };
                let out = w.on_notify(msg, now);
                (out.response(msg), out.events)
            }
            rsip::Method::Register => {
                let out = super::availability::third_party_register(
                    msg,
                    d.parts.availability.third_party_register,
                );
                let mut resp = out.response(msg);
                if let Some(to) = msg.header("To")
                    && msg.to_tag().is_none()
                {
                    let tag = self.fresh();
                    if let Ok(tagged) = with_tag(to, Some(&tag)) {
                        let _ = resp.set_header("To", &tagged);
                    }
                }
                (resp, out.event.into_iter().collect())
            }
            _ => return false,
        };
        let status = resp.status_code().unwrap_or(500);
        self.respond(key, status, resp);
        for ev in events {
            match ev {
                AvailabilityEvent::Registered { aor, .. } => {
                    tracing::debug!(%aor, "user registered: delivering what is kept");
                    self.user_available(Bytes::from(aor));
                }
                AvailabilityEvent::Unregistered { aor } => {
                    tracing::debug!(%aor, "user unregistered");
                }
            }
        }
        self.drive_watcher();
        true
    }

    /// Send the SUBSCRIBEs (new, refreshes, retries) the watcher has due.
    fn drive_watcher(&mut self) {
        let now = self.now();
        let Some((w, side, target)) = self.deferred.as_mut().and_then(|d| d.watcher.as_mut())
        else {
            return;
        };
        let (side, target) = (*side, *target);
        let requests = w.handle_timeout(now, &mut self.ids);
        for m in requests {
            self.send_request_to(side, m, None, target);
        }
    }

    /// Per-user mode: subscribe to `user`'s registrations once something is kept for them.
    fn watch_user(&mut self, user: &Bytes) {
        let now = self.now();
        let Some((w, _, _)) = self.deferred.as_mut().and_then(|d| d.watcher.as_mut()) else {
            return;
        };
        let user = String::from_utf8_lossy(user);
        match w.watch(&user, &mut self.ids, now) {
            Ok(true) => self.drive_watcher(),
            Ok(false) => {}
            Err(e) => tracing::warn!(%user, error = %e, "registrations of a user not watched"),
        }
    }

    /// Per-user mode: nothing is kept for `user` any more: end the subscription.
    fn unwatch_user(&mut self, user: &Bytes) {
        let Some((w, side, target)) = self.deferred.as_mut().and_then(|d| d.watcher.as_mut())
        else {
            return;
        };
        let (side, target) = (*side, *target);
        if let Some(m) = w.unwatch(&String::from_utf8_lossy(user)) {
            self.send_request_to(side, m, None, target);
        }
    }

    /// `user` is available now (a registration seen): deliver what is kept for them.
    pub fn user_available(&mut self, user: Bytes) {
        let now = self.now();
        let Some(d) = self.deferred.as_mut() else {
            return;
        };
        let actions = d.schedule.available(user, now);
        self.run_store_actions(actions);
    }

    fn run_store_actions(&mut self, actions: Vec<Action>) {
        for action in actions {
            let Some(d) = self.deferred.as_ref() else {
                return;
            };
            let store = d.parts.store.clone();
            let events = d.parts.events.clone();
            match action {
                Action::Fetch { user, after, limit } => {
                    tokio::spawn(async move {
                        let now = crate::store::unix_ms_now();
                        let result = match store.pending(user.clone(), after, limit).await {
                            Ok(list) => {
                                let mut out = Vec::with_capacity(list.len());
                                for p in list {
                                    let origin = match p.message.message_id.clone() {
                                        Some(id) => store.origin(id, now).await.unwrap_or(None),
                                        None => None,
                                    };
                                    out.push((p, origin));
                                }
                                Ok(out)
                            }
                            Err(e) => Err(e),
                        };
                        let _ = events
                            .send(CoreEvent::Store(StoreEvent::Fetched { user, result }))
                            .await;
                    });
                }
                Action::Ack(key) => {
                    tokio::spawn(async move {
                        let user = key.recipient.clone();
                        // Ok(false): already gone (expired meanwhile): nothing to redo.
                        let ok = store.ack_delivered(key).await.is_ok();
                        let _ = events
                            .send(CoreEvent::Store(StoreEvent::Acked { user, ok }))
                            .await;
                    });
                }
                Action::Send(p) => self.send_stored(*p),
                Action::Drained(user) => self.unwatch_user(&user),
                Action::GiveUp(p) => self.give_up(&p),
            }
        }
    }

    fn send_stored(&mut self, p: Pending) {
        let now = self.now();
        let Some(d) = self.deferred.as_mut() else {
            return;
        };
        let user = p.key.recipient.clone();
        let to = p.message.to_side;
        let deferred_icsi = &self
            .parts
            .mappings
            .service(crate::mapping::Service::Deferred)
            .cpm_icsi;
        let request = deferred::delivery_request(
            &p.message,
            &mut self.ids,
            &d.parts.sip_limits,
            deferred_icsi,
        );
        match request {
            Ok(m) => {
                metrics::stored_delivery(to, metrics::DeliveryResult::Attempt);
                match self.send_request(to, m, None) {
                    Some(key) => {
                        if let Some(c) = self.clients.get_mut(&key) {
                            c.delivery = Some((user, p.key));
                        }
                    }
                    None => {
                        // No next hop: as if unavailable.
                        if let Some(d) = self.deferred.as_mut() {
                            let actions =
                                d.schedule.answered(&user, &p.key, Answer::Unavailable, now);
                            self.run_store_actions(actions);
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "a stored message cannot be delivered: removed");
                let actions = d.schedule.answered(&user, &p.key, Answer::Rejected, now);
                self.run_store_actions(actions);
            }
        }
    }

    /// The final answer `status` of the delivery of stored message `key` to `user`.
    fn delivery_answered(&mut self, side: Side, user: &Bytes, key: &MessageKey, status: u16) {
        let now = self.now();
        let Some(d) = self.deferred.as_mut() else {
            return;
        };
        let answer = Answer::of(status, d.policy(side));
        metrics::stored_delivery(
            side,
            match answer {
                Answer::Delivered => metrics::DeliveryResult::Delivered,
                Answer::Unavailable => metrics::DeliveryResult::Unavailable,
                Answer::Rejected => metrics::DeliveryResult::Rejected,
            },
        );
        let actions = d.schedule.answered(user, key, answer, now);
        self.run_store_actions(actions);
    }

    /// A kept message will not be delivered (expired, or refused for good): its sender gets
    /// the `failed` notification it asked for, carried by the translator like one from the
    /// recipient's network (to the sender's device, SD 5.2.1.1 ids).
    fn give_up(&mut self, p: &Pending) {
        let from = p.message.to_side;
        let contact = match from {
            Side::Cpm => self.parts.addrs.cpm.contact.clone(),
            Side::Simple => self.parts.addrs.simple.contact.clone(),
        };
        let datetime = rfc3339_utc(SystemTime::now());
        let Some(notification) =
            deferred::failed_notification(&p.message, &mut self.ids, &datetime, &contact)
        else {
            return;
        };
        metrics::stored_delivery(from, metrics::DeliveryResult::FailedNotification);
        self.translate_request(from, &notification, None);
    }

    // ---- answers --------------------------------------------------------------------------

    /// The node's own answer on a server transaction.
    fn answer(
        &mut self,
        key: &Arc<ServerKey>,
        status: u16,
        reason: &str,
        extra: Option<(&str, &str)>,
    ) {
        let Some(request) = self.servers.get(key).and_then(|e| e.request.clone()) else {
            return;
        };
        let mut resp = request.response_to(status, reason);
        if status > 100
            && request.to_tag().is_none()
            && let Some(to) = request.header("To")
        {
            let tag = self.fresh();
            if let Ok(tagged) = with_tag(to, Some(&tag)) {
                let _ = resp.set_header("To", &tagged);
            }
        }
        if let Some((name, value)) = extra {
            let _ = resp.push_header(name, value);
        }
        self.respond(key, status, resp);
    }

    fn respond(&mut self, key: &Arc<ServerKey>, status: u16, resp: SipMessage) {
        let now = self.now();
        let Some(entry) = self.servers.get_mut(key) else {
            return;
        };
        if entry.answered && status >= 200 && !(200..300).contains(&status) {
            return;
        }
        if status >= 200 {
            if !entry.answered {
                self.unanswered = self.unanswered.saturating_sub(1);
            }
            entry.answered = true;
        }
        let method = metrics::Method::from_token(key.method.as_bytes());
        if entry
            .tx
            .send_response(status, resp.serialize(), now)
            .is_ok()
        {
            metrics::sip_response(
                side_metric(key.side),
                metrics::Direction::Out,
                method,
                status,
            );
            if status >= 200 && key.method != "INVITE" {
                // Timer J only absorbs retransmissions now: the request is not needed.
                entry.request = None;
            }
        }
        self.flush_server(key);
    }

    /// An answer without a transaction (the node is overloaded or draining).
    fn reply_stateless(
        &mut self,
        side: Side,
        route: &ResponseRoute,
        request: &SipMessage,
        status: u16,
        reason: &str,
    ) {
        let mut resp = request.response_to(status, reason);
        if let Some(to) = request.header("To")
            && request.to_tag().is_none()
        {
            let tag = self.fresh();
            if let Ok(tagged) = with_tag(to, Some(&tag)) {
                let _ = resp.set_header("To", &tagged);
            }
        }
        let _ = resp.push_header("Retry-After", "5");
        self.queue(side, Outbound::Back(*route, resp.serialize()));
    }

    // ---- transactions' output and timers ---------------------------------------------------

    fn flush_server(&mut self, key: &Arc<ServerKey>) {
        let Some(entry) = self.servers.get_mut(key) else {
            return;
        };
        // Usually one datagram (the answer), never more than a few: kept inline.
        let mut out = SmallVec::<[Bytes; 2]>::new();
        while let Some(bytes) = entry.tx.poll_transmit() {
            out.push(bytes);
        }
        let mut done = false;
        while let Some(ev) = entry.tx.poll_event() {
            if ev == TransactionEvent::Terminated {
                done = true;
            }
        }
        let route = entry.route;
        let deadline = entry
            .tx
            .poll_timeout()
            .filter(|d| entry.scheduled != Some(*d));
        if let Some(d) = deadline {
            entry.scheduled = Some(d);
        }
        if done {
            if self.servers.remove(key).is_some_and(|e| !e.answered) {
                self.unanswered = self.unanswered.saturating_sub(1);
            }
        } else if let Some(at) = deadline {
            let now = self.now();
            self.timers.push(now, at, TxRef::Server(Arc::clone(key)));
        }
        for bytes in out {
            self.queue(key.side, Outbound::Back(route, bytes));
        }
    }

    fn flush_client(&mut self, key: &Arc<ClientKey>) {
        let Some(entry) = self.clients.get_mut(key) else {
            return;
        };
        let mut out = SmallVec::<[Bytes; 2]>::new();
        while let Some(bytes) = entry.tx.poll_transmit() {
            out.push(bytes);
        }
        let mut timed_out = false;
        let mut done = false;
        while let Some(ev) = entry.tx.poll_event() {
            match ev {
                TransactionEvent::Timeout => timed_out = true,
                TransactionEvent::Terminated => done = true,
            }
        }
        let target = entry.target;
        let deadline = entry
            .tx
            .poll_timeout()
            .filter(|d| entry.scheduled != Some(*d));
        if let Some(d) = deadline {
            entry.scheduled = Some(d);
        }
        // Only a timeout needs the request and its origin (taken: the transaction is over).
        let timed_out = timed_out.then(|| {
            (
                entry.request.take(),
                entry.origin.take(),
                entry.delivery.take(),
            )
        });
        for bytes in out {
            self.transmit(key.side, target, bytes);
        }
        if let Some((request, origin, delivery)) = timed_out {
            self.client_timed_out(key, request, origin, delivery);
        }
        if done {
            self.clients.remove(key);
        } else if let Some(at) = deadline {
            let now = self.now();
            self.timers.push(now, at, TxRef::Client(Arc::clone(key)));
        }
    }

    /// No answer from the far side (Timer B/F, or the transport failed): the caller gets 408,
    /// through the translator so that a session being set up is forgotten (§8.1.3.1).
    fn client_timed_out(
        &mut self,
        key: &Arc<ClientKey>,
        request: Option<Arc<SipMessage>>,
        origin: Option<Origin>,
        delivery: Option<(Bytes, MessageKey)>,
    ) {
        metrics::transaction_timeout(
            side_metric(key.side),
            metrics::Method::from_token(key.method.as_bytes()),
        );
        // A non-INVITE transaction that had its final response gave these up; it cannot time
        // out afterwards (Timer F is cancelled in Completed, §17.1.2.2).
        let Some(request) = request else {
            return;
        };
        let call_id = request.call_id().unwrap_or_default();
        if key.method == "OPTIONS" {
            self.probe_failed(key.side, call_id);
        }
        if let Some((user, stored)) = delivery {
            self.delivery_answered(key.side, &user, &stored, 408);
        } else if key.method == "SUBSCRIBE"
            && origin.is_none()
            && let Some((w, _, _)) = self.deferred.as_mut().and_then(|d| d.watcher.as_mut())
        {
            w.on_request_timeout(call_id, self.tick);
            self.drive_watcher();
        } else {
            let timeout = request.response_to(408, "Request Timeout");
            self.relay_response(origin, &timeout, Some(&request));
        }
    }

    /// Gives back the room a burst of transactions left in the core's maps once it has passed
    /// (`node::memory`): a hash map otherwise keeps the size of its busiest moment.
    pub fn shrink_if_sparse(&mut self) {
        use super::memory::shrink_if_sparse as shrink;
        shrink(&mut self.servers);
        shrink(&mut self.clients);
        shrink(&mut self.media);
        shrink(&mut self.relay_of);
        shrink(&mut self.sessions);
        shrink(&mut self.acks);
        self.timers
            .shrink_if_sparse(super::memory::SPARSE_MIN_CAPACITY);
        if let Some(d) = self.deferred.as_mut() {
            shrink(&mut d.puts);
            shrink(&mut d.sunk);
        }
    }

    fn on_timers(&mut self) {
        let now = self.now();
        while let Some(r) = self.timers.pop_due(now) {
            match r {
                TxRef::Server(key) => {
                    if let Some(e) = self.servers.get_mut(&key)
                        && e.tx.poll_timeout().is_some_and(|t| t <= now)
                    {
                        e.tx.handle_timeout(now);
                        // Timer G fired: the final response goes again (§17.2.1).
                        count_retransmission(e.tx.has_transmit(), key.side, key.method);
                        self.flush_server(&key);
                    }
                }
                TxRef::Client(key) => {
                    if let Some(e) = self.clients.get_mut(&key)
                        && e.tx.poll_timeout().is_some_and(|t| t <= now)
                    {
                        e.tx.handle_timeout(now);
                        // Timer A or E fired: the request goes again (§17.1.1.2, §17.1.2.2).
                        count_retransmission(e.tx.has_transmit(), key.side, key.method);
                        self.flush_client(&key);
                    }
                }
                TxRef::AckKept(key) => {
                    let window = self.sides[index(key.0)].timers.t1_ms.saturating_mul(64);
                    // A later ACK for the same Call-ID (a re-INVITE's) has its own wake-up.
                    if self
                        .acks
                        .get(&*key)
                        .is_some_and(|kept| kept.sent.after(window) <= now)
                    {
                        self.acks.remove(&*key);
                    }
                }
            }
        }
    }

    fn transmit(&mut self, side: Side, target: Target, bytes: Bytes) {
        self.queue(side, Outbound::To(target, bytes));
    }

    /// Send at once when the transport can without waiting (the usual case: a datagram, an
    /// open connection); else through the side's sender task, which may wait (a TCP connect).
    fn queue(&mut self, side: Side, out: Outbound) {
        let transport = &self.sides[index(side)].transport;
        let (route, bytes) = match &out {
            Outbound::To(t, b) => (TryRoute::To(*t), b),
            Outbound::Back(r, b) => (TryRoute::Back(*r), b),
        };
        match transport.try_send(route, bytes) {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(?side, error = %e, "SIP send failed");
                return;
            }
        }
        if self.senders[index(side)].try_send(out).is_err() {
            // The side's queue is full: the datagram is lost as on a congested network; the
            // transaction's retransmissions (UDP) or its timeout recover (§17.1).
            tracing::warn!(?side, "outbound SIP queue full");
        }
    }

    // ---- MSRP sessions ---------------------------------------------------------------------

    fn on_msrp_leg(&mut self, leg: MsrpLeg) {
        let now = self.now();
        let peer_sid = self
            .parts
            .table
            .view(now)
            .msrp(&leg.local_session)
            .map(|p| p.peer_session);
        let Some(peer_sid) = peer_sid else { return };
        match self.media.remove(&peer_sid) {
            Some(other) => self.open_relay(other.leg, leg),
            None => {
                self.media
                    .insert(leg.local_session.clone(), PendingMedia { leg });
            }
        }
    }

    fn open_relay(&mut self, a: MsrpLeg, b: MsrpLeg) {
        let spec = |leg: &MsrpLeg| -> Option<LegSpec> {
            let remote_path = leg
                .peer
                .path
                .iter()
                .map(|u| MsrpUri::parse(u.clone()))
                .collect::<Result<Vec<_>, _>>()
                .ok()?;
            Some(LegSpec {
                side: leg.side,
                local_session_id: leg.local_session.clone(),
                remote_path,
                setup: match leg.setup {
                    sdp::Setup::Active => Setup::Active,
                    _ => Setup::Passive,
                },
                cema: false,
            })
        };
        let (Some(sa), Some(sb)) = (spec(&a), spec(&b)) else {
            tracing::warn!("an MSRP path of the session is unusable");
            return;
        };
        let id = self.next_relay_id;
        self.next_relay_id += 1;
        let record = self.recorder.as_ref().and_then(|(r, _)| {
            let view = self.parts.table.view(self.now());
            r.session_opened(id, [&a.local_session, &b.local_session], &view)
        });
        let drops = self
            .deferred
            .as_ref()
            .and_then(|d| d.drops.clone())
            .map(|parts| SessionDrops {
                parts,
                id,
                legs: [
                    (a.side, a.local_session.clone()),
                    (b.side, b.local_session.clone()),
                ],
            });
        let translator = Arc::new(SessionTranslator {
            drops,
            record,
            table: self.parts.table.clone(),
            mappings: self.parts.mappings.clone(),
            addrs: Arc::clone(&self.parts.addrs),
            clock: self.parts.clock,
            ids: Mutex::new(RandomIds::new()),
            routes: translate::chat::RouteCache::new(),
        });
        match self.parts.relay.open(SessionSpec {
            id,
            legs: [sa, sb],
            translator,
        }) {
            Ok(()) => {
                metrics::msrp_sessions_active(1);
                self.relay_of.insert(a.local_session.clone(), id);
                self.relay_of.insert(b.local_session.clone(), id);
                self.sessions.insert(id, [a.local_session, b.local_session]);
            }
            Err(e) => tracing::warn!(error = %e, "MSRP session not opened"),
        }
    }

    /// Sessions the translator forgot (BYE, failed INVITE): their relay sessions close.
    fn forget_media(&mut self, changes: &[Change]) {
        for c in changes {
            if let Change::Remove(Key::Msrp(sid)) = c {
                self.media.remove(sid);
                if let Some(id) = self.relay_of.remove(sid) {
                    if let Some((r, _)) = &self.recorder {
                        r.session_ended(id);
                    }
                    if let Some(sids) = self.sessions.remove(&id) {
                        for s in sids {
                            self.relay_of.remove(&s);
                        }
                    }
                    if self.parts.relay.close(id) {
                        metrics::msrp_sessions_active(-1);
                    }
                }
            }
        }
    }

    fn on_relay(&mut self, ev: RelayEvent) {
        let RelayEvent::SessionEnded { id, reason, .. } = ev else {
            return;
        };
        if let Some((r, _)) = &self.recorder {
            r.session_ended(id);
        }
        let Some(sids) = self.sessions.remove(&id) else {
            return;
        };
        metrics::msrp_sessions_active(-1);
        for s in &sids {
            self.relay_of.remove(s);
        }
        let now = self.now();
        let result = {
            let view = self.parts.table.view(now);
            session::hang_up(&sids[0], &view, &self.parts.mappings, &reason.to_string())
        };
        if let Ok(outcome) = result {
            let _ = self.parts.table.apply(&outcome.changes, now);
            self.apply_outcome(outcome, None);
        }
    }
}

/// The chunk translation of one session, for the MSRP relay: the table finds the other leg by
/// the To-Path (`translate::chat::msrp_request`).
struct SessionTranslator {
    /// Where the messages towards a user whose leg drops go; `None`: the session ends.
    drops: Option<SessionDrops>,
    /// The session's record in the MSS, when its CPM user wants it (issue 8).
    record: Option<Arc<super::record::SessionRecord>>,
    table: Arc<Table>,
    mappings: Arc<Mappings>,
    addrs: Arc<Addresses>,
    clock: Clock,
    ids: Mutex<RandomIds>,
    /// The session's two routes, derived from the table once (`translate::chat::RouteCache`).
    routes: translate::chat::RouteCache,
}

impl SessionTranslator {
    /// `session_id`: the session-id of the To-Path's last URI, when the relay read it already.
    fn translate(
        &self,
        msg: &Message,
        session_id: Option<&Bytes>,
    ) -> Result<Message, TranslateError> {
        let now = self.clock.now();
        let datetime = if translate::chat::reads_datetime(msg) {
            rfc3339_utc(SystemTime::now())
        } else {
            String::new()
        };
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        let generation = self.table.sessions_generation();
        let view = self.table.view(now);
        let mut env = Env {
            now,
            ids: &mut *ids,
            datetime: &datetime,
        };
        let (_, out) = translate::chat::msrp_request_cached(
            msg,
            session_id,
            &view,
            generation,
            &self.routes,
            &self.mappings,
            &self.addrs,
            &mut env,
        )?;
        if self.table.apply(&out.changes, now).is_err() {
            // The chunk still goes; only the notification routing of its message is lost.
            metrics::table_refused(metrics::TableKind::Message);
        }
        Ok(out.send)
    }
}

impl ChunkTranslator for SessionTranslator {
    fn send(&self, from: Side, msg: &Message) -> Result<Message, (u16, &'static str)> {
        self.send_to(from, None, msg)
    }

    fn send_to(
        &self,
        from: Side,
        session_id: Option<&Bytes>,
        msg: &Message,
    ) -> Result<Message, (u16, &'static str)> {
        match self.translate(msg, session_id) {
            Ok(m) => {
                if let Some(r) = &self.record {
                    // The CPM form of the chunk: as received from CPM, as sent to CPM.
                    r.chunk(from, if from == Side::Cpm { msg } else { &m });
                }
                metrics::translation(side_metric(from), metrics::TranslationKind::Chat);
                let direction = match from {
                    Side::Cpm => metrics::RelayDirection::CpmToSimple,
                    Side::Simple => metrics::RelayDirection::SimpleToCpm,
                };
                let len = m.body.as_ref().map_or(0, |b| b.len() as u64);
                metrics::msrp_chunk(direction, len);
                Ok(m)
            }
            Err(e) => {
                tracing::info!(
                    side = ?from,
                    kind = "chat",
                    reason = metrics::FailureReason::of(&e).as_str(),
                    status = e.status(),
                    error = %e,
                    "MSRP chunk refused"
                );
                metrics::translation_failure(
                    side_metric(from),
                    metrics::TranslationKind::Chat,
                    metrics::FailureReason::of(&e),
                );
                Err((e.status(), msrp_comment(e.status())))
            }
        }
    }

    fn report(&self, _from: Side, msg: &Message) -> Option<Message> {
        self.translate(msg, None).ok()
    }

    fn report_to(&self, _from: Side, session_id: Option<&Bytes>, msg: &Message) -> Option<Message> {
        self.translate(msg, session_id).ok()
    }

    fn on_drop(
        &self,
        side: Side,
        reason: &super::msrp::EndReason,
    ) -> Option<Arc<dyn super::msrp::takeover::Keep>> {
        let drops = self.drops.as_ref()?;
        let (_, sid) = drops.legs.iter().find(|(s, _)| *s == side)?;
        let (leg, conversation) = {
            let view = self.table.view(self.clock.now());
            let m = view.msrp(sid)?;
            let peer = view.dialog(&crate::translate::state::DialogKey {
                side: m.side,
                call_id: m.call_id,
            })?;
            (peer.leg, peer.conversation)
        };
        let i = index(side);
        let session = deferred::MailboxSession::of_dialog(
            &leg,
            side,
            &drops.parts.contacts[i],
            conversation.as_ref(),
            &drops.parts.policies[i],
        );
        metrics::store_takeover();
        let events = drops.parts.events.clone();
        let (id, reason) = (drops.id, reason.to_string());
        tokio::spawn(async move {
            let _ = events
                .send(CoreEvent::Store(StoreEvent::LegDropped {
                    id,
                    side,
                    reason,
                }))
                .await;
        });
        Some(Arc::new(drops.parts.keeping.keeper(session)))
    }
}

/// A session's share of [`DropParts`]: its relay id and its legs' MSRP session-ids.
struct SessionDrops {
    parts: Arc<DropParts>,
    id: u64,
    legs: [(Side, Bytes); 2],
}

/// A timer made a transaction send again: counted as the node's own retransmission.
/// The address a registrar URI names when its host is an IP literal with a port
/// (`sip:registrar@192.0.2.7:5060;transport=tcp`): the node sends its SUBSCRIBEs there
/// directly (RFC 3261 §8.1.2 leaves the first hop to the UA's configuration). `None`: a name,
/// routed by the side's next hop.
fn registrar_target(uri: &str) -> Option<Target> {
    let rest = uri.trim().strip_prefix("sip:")?;
    let host_part = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let (hostport, params) = host_part.split_once(';').unwrap_or((host_part, ""));
    let addr: std::net::SocketAddr = hostport.parse().ok()?;
    let tcp = params
        .split(';')
        .any(|p| p.trim().eq_ignore_ascii_case("transport=tcp"));
    Some(Target {
        addr,
        transport: if tcp { Transport::Tcp } else { Transport::Udp },
    })
}

fn count_retransmission(sent: bool, side: Side, method: &str) {
    if sent {
        metrics::retransmission(
            side_metric(side),
            metrics::Direction::Out,
            metrics::Method::from_token(method.as_bytes()),
        );
    }
}

/// RFC 4975 §10 comments for the codes the translator gives.
fn msrp_comment(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        403 => "Forbidden",
        413 => "Message Too Large",
        415 => "Unsupported Media Type",
        481 => "Session Does Not Exist",
        _ => "Error",
    }
}

/// The branch that names a request's server transaction (RFC 3261 §17.2.3): the top Via's
/// branch when it has the magic cookie; for an older client without one, its Call-ID, CSeq and
/// From tag, so that two such requests never share a transaction.
fn transaction_branch(msg: &SipMessage) -> String {
    match msg.top_via_branch() {
        Some(b) if b.starts_with("z9hG4bK") => b.to_string(),
        _ => format!(
            "{}|{}|{}",
            msg.call_id().unwrap_or_default(),
            msg.cseq().map_or(0, |c| c.seq),
            msg.from_tag().unwrap_or_default()
        ),
    }
}

/// The sent-by of the top Via (host and port as written), part of the server transaction key.
fn sent_by(via: Option<&super::transport::ViaParts<'_>>) -> String {
    let Some(v) = via else {
        return String::new();
    };
    let mut out = String::with_capacity(v.host.len() + 6);
    out.push_str(v.host);
    out.push(':');
    super::transport::push_decimal(&mut out, u32::from(v.port.unwrap_or(5060)));
    out
}

fn timer_config(base: TimerConfig, transport: Transport) -> TimerConfig {
    TimerConfig {
        reliable: transport != Transport::Udp,
        ..base
    }
}

fn translation_kind(msg: &SipMessage) -> metrics::TranslationKind {
    match msg.method() {
        Some(rsip::Method::Message) => {
            let ct = msg.content_type().unwrap_or_default().as_bytes();
            // Media types are case-insensitive (RFC 2045 §5.1); no lower-cased copy.
            let mentions =
                |word: &[u8]| ct.windows(word.len()).any(|w| w.eq_ignore_ascii_case(word));
            if mentions(b"imdn") {
                metrics::TranslationKind::Imdn
            } else if mentions(b"iscomposing") {
                metrics::TranslationKind::IsComposing
            } else {
                metrics::TranslationKind::Pager
            }
        }
        _ => metrics::TranslationKind::Session,
    }
}

/// A reason phrase for a refusal: the error's text, without line breaks.
fn reason_of(e: &TranslateError) -> String {
    let text = e.to_string();
    let reason = match e.status() {
        400 => "Bad Request",
        403 => "Forbidden",
        405 => "Method Not Allowed",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        481 => "Call/Transaction Does Not Exist",
        488 => "Not Acceptable Here",
        _ => "Server Internal Error",
    };
    format!("{reason} ({})", text.replace(['\r', '\n'], " "))
}

/// The ACK of a non-2xx final answer to `request` (§17.1.1.3): same Request-URI, top Via,
/// From, Call-ID and CSeq number, the answer's To, the request's Route.
fn ack_for(request: &SipMessage, response: &SipMessage) -> SipMessage {
    let uri = request
        .request_uri()
        .map(|u| String::from_utf8_lossy(u).into_owned())
        .unwrap_or_default();
    let Ok(mut ack) = SipMessage::request(rsip::Method::Ack, &uri) else {
        return request.clone();
    };
    let seq = request.cseq().map_or(1, |c| c.seq);
    for (name, value) in [
        ("Via", request.header("Via")),
        ("Max-Forwards", Some("70")),
        ("From", request.header("From")),
        ("To", response.header("To")),
        ("Call-ID", request.header("Call-ID")),
    ] {
        if let Some(v) = value {
            let _ = ack.push_header(name, v);
        }
    }
    let _ = ack.push_header("CSeq", &format!("{seq} ACK"));
    for route in request.header_all("Route") {
        let _ = ack.push_header("Route", route);
    }
    ack
}
