//! Store-and-forward in the node (issue 7; CPM 2.0 §4.2: "storing of chat messages and
//! associated notifications while a chat participant is not available" and their "delivery
//! ... once the recipient becomes available").
//!
//! The decisions are here, free of I/O, the way the translator is: which answer of a next hop
//! means "not available now" ([`should_store`]), what is kept of the message
//! ([`stored_message`]), how a kept message goes out again ([`delivery_request`]), the
//! `failed` notification owed when one expires ([`failed_notification`]), and the per-user
//! delivery schedule ([`Scheduler`]). The B2BUA core (`node::b2bua`) runs the store calls they
//! ask for on spawned tasks and feeds the results back; nothing here awaits.
//!
//! Delivery is stop-and-wait per user: the next message goes only after the previous one got
//! its 2xx and was removed from the store, so messages arrive in the order they were stored
//! (issue 7: "in the original order per conversation"). A crash between the 2xx and the
//! removal sends that message again with the same `imdn.Message-ID` (RFC 5438 §6.3), which the
//! recipient's device uses to drop the copy.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use bytes::Bytes;

use super::availability::{Jitter, RetrySchedule};
use crate::config::StorePolicy;
use crate::store::{Kind, MessageKey, Pending, StoredMessage};
use crate::time::Millis;
use crate::translate::addr::{aor, uri_of};
use crate::translate::conversation::IdSource;
use crate::translate::state::{ConversationIds, Device, LegDialog, MessageOrigin, Side};
use crate::wire::cpim::Cpim;
use crate::wire::imdn::{DeliveryStatus, Imdn};
use crate::wire::sip::{self, SipMessage};
use crate::wire::text::media_type_is;

const IMDN_NS: &str = "urn:ietf:params:imdn";
const CPIM_TYPE: &str = "message/cpim";
const IMDN_TYPE: &str = "message/imdn+xml";
const ISCOMPOSING_TYPE: &str = "application/im-iscomposing+xml";

/// Whether the node keeps the pager MESSAGE `sent` (the translated request it sent to side
/// `to`) on its recipient's behalf, given the next hop's final answer `status`.
///
/// Only a request outside a dialog (no To tag: a pager MESSAGE, RFC 3428) is kept, and not an
/// isComposing indication: RFC 3994 §4 makes an indication stale after its refresh interval, so
/// one delivered later would say something false.
pub fn should_store(sent: &SipMessage, status: u16, policy: &StorePolicy) -> bool {
    sent.method() == Some(&rsip::Method::Message)
        && sent.to_tag().is_none()
        && policy.is_unavailable(status)
        && !is_iscomposing(sent)
}

fn is_iscomposing(msg: &SipMessage) -> bool {
    let Some(ct) = msg.content_type() else {
        return false;
    };
    if media_type_is(ct.as_bytes(), ISCOMPOSING_TYPE) {
        return true;
    }
    media_type_is(ct.as_bytes(), CPIM_TYPE)
        && Cpim::parse(msg.body().clone()).is_ok_and(|c| {
            c.content_type()
                .is_some_and(|t| media_type_is(t, ISCOMPOSING_TYPE))
        })
}

/// The record kept for the pager MESSAGE `sent` towards side `to` (its wire bytes as sent; the
/// node's Via is replaced at each delivery attempt, a new transaction, RFC 3261 §17.1), with
/// what the table remembers of its sender (`origin`, by its `imdn.Message-ID`).
pub fn stored_message(
    sent: &SipMessage,
    to: Side,
    origin: Option<&MessageOrigin>,
    received_from: &SipMessage,
    now_unix_ms: u64,
    policy: &StorePolicy,
) -> StoredMessage {
    let recipient = Bytes::from(aor(uri_of(sent.header("To").unwrap_or_default())));
    let cpim = sent
        .content_type()
        .filter(|ct| media_type_is(ct.as_bytes(), CPIM_TYPE))
        .and_then(|_| Cpim::parse(sent.body().clone()).ok());
    let kind = match cpim.as_ref().and_then(|c| c.content_type()) {
        Some(t) if media_type_is(t, IMDN_TYPE) => Kind::Imdn,
        _ => Kind::Pager,
    };
    let header = |name: &str| {
        sent.header(name)
            .map(|v| Bytes::copy_from_slice(v.as_bytes()))
    };
    let ids = origin.and_then(|o| o.conversation.as_ref());
    let sender = match origin {
        Some(o) => o.device.clone(),
        None => Device {
            aor: Bytes::from(aor(uri_of(
                received_from.header("From").unwrap_or_default(),
            ))),
            gruu: None,
            instance: None,
        },
    };
    StoredMessage {
        recipient,
        to_side: to,
        kind,
        payload: sent.serialize(),
        message_id: cpim.as_ref().and_then(|c| c.imdn_message_id().cloned()),
        conversation_id: header("Conversation-ID")
            .or_else(|| ids.map(|i| i.conversation_id.clone())),
        contribution_id: header("Contribution-ID")
            .or_else(|| ids.map(|i| i.contribution_id.clone())),
        date_time: cpim.as_ref().and_then(|c| c.datetime().cloned()),
        received_at_unix_ms: now_unix_ms,
        expires_at_unix_ms: now_unix_ms.saturating_add(policy.max_age_s.saturating_mul(1000)),
        sender,
    }
}

/// A chat session the node answered on behalf of a callee who is not available
/// (`node::mailbox`): what each of its messages is kept as.
#[derive(Debug, Clone)]
pub struct MailboxSession {
    /// The callee's network.
    pub to_side: Side,
    /// The callee's address of record (the store's queue).
    pub recipient: Bytes,
    /// The Request-URI of the INVITE the node sent the callee.
    pub request_uri: String,
    /// Its From, without tag (the caller as written in the callee's network).
    pub from: String,
    /// The node's Contact in the callee's network.
    pub contact: String,
    /// The session's `Conversation-ID` and `Contribution-ID` (CPM 2.0 SD 5.2.1.1), written on
    /// each message delivered to a CPM user.
    pub conversation_id: Option<String>,
    /// See `conversation_id`.
    pub contribution_id: Option<String>,
    /// The caller.
    pub sender: Device,
    /// How long a message is kept (ms).
    pub max_age_ms: u64,
}

impl MailboxSession {
    /// What is kept of the session the node answered with `sent` (the INVITE it sent the
    /// callee's network `to`), by `policy`.
    pub fn of(sent: &SipMessage, to: Side, contact: &str, policy: &StorePolicy) -> MailboxSession {
        let from = sent.header("From").unwrap_or_default();
        let caller = aor(uri_of(from));
        MailboxSession {
            to_side: to,
            recipient: Bytes::from(aor(uri_of(sent.header("To").unwrap_or_default()))),
            request_uri: sent
                .request_uri()
                .map(|u| String::from_utf8_lossy(u).into_owned())
                .unwrap_or_default(),
            from: crate::translate::addr::with_tag(from, None)
                .unwrap_or_else(|_| format!("<{caller}>")),
            contact: contact.to_string(),
            conversation_id: sent.header("Conversation-ID").map(str::to_string),
            contribution_id: sent.header("Contribution-ID").map(str::to_string),
            sender: Device {
                aor: Bytes::from(caller),
                gruu: None,
                instance: None,
            },
            max_age_ms: policy.max_age_s.saturating_mul(1000),
        }
    }
}

impl MailboxSession {
    /// What is kept of an established session whose leg towards side `to` dropped mid-session
    /// (`node::msrp::takeover`): from the node's dialog on that leg (RFC 3261 §12: its remote
    /// URI is the dropped user, its local URI the other user as written in that network) and
    /// the session's conversation identities.
    pub fn of_dialog(
        leg: &LegDialog,
        to: Side,
        contact: &str,
        conversation: Option<&ConversationIds>,
        policy: &StorePolicy,
    ) -> MailboxSession {
        let local = String::from_utf8_lossy(&leg.local_uri);
        let remote = String::from_utf8_lossy(&leg.remote_uri);
        let user = aor(uri_of(&remote));
        let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
        MailboxSession {
            to_side: to,
            recipient: Bytes::from(user.clone()),
            // The user, not the device that dropped: any of their devices may take it later.
            request_uri: user,
            from: crate::translate::addr::with_tag(&local, None)
                .unwrap_or_else(|_| local.clone().into_owned()),
            contact: contact.to_string(),
            conversation_id: conversation.map(|c| text(&c.conversation_id)),
            contribution_id: conversation.map(|c| text(&c.contribution_id)),
            sender: Device {
                aor: Bytes::from(aor(uri_of(&local))),
                gruu: None,
                instance: None,
            },
            max_age_ms: policy.max_age_s.saturating_mul(1000),
        }
    }
}

/// The record kept for one message (`body`, of MSRP Content-Type `content_type`) of a session
/// the node answered for its callee: the pager MESSAGE that will deliver it. `None` for what
/// is not kept (isComposing, RFC 3994 §4: stale later; an empty body).
pub fn session_message(
    session: &MailboxSession,
    content_type: &[u8],
    body: Bytes,
    now_unix_ms: u64,
) -> Option<StoredMessage> {
    if body.is_empty() || media_type_is(content_type, ISCOMPOSING_TYPE) {
        return None;
    }
    let cpim = media_type_is(content_type, CPIM_TYPE)
        .then(|| Cpim::parse(body.clone()).ok())
        .flatten();
    let inner = cpim.as_ref().and_then(|c| c.content_type());
    if inner.is_some_and(|t| media_type_is(t, ISCOMPOSING_TYPE)) {
        return None;
    }
    let kind = if inner.is_some_and(|t| media_type_is(t, IMDN_TYPE)) {
        Kind::Imdn
    } else {
        Kind::Pager
    };
    let content_type = std::str::from_utf8(content_type).ok()?;
    let mut m = SipMessage::request(rsip::Method::Message, &session.request_uri).ok()?;
    // Placeholders: every delivery writes its own Via, Call-ID and From tag.
    m.push_header("Via", "SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKkept")
        .ok()?;
    m.push_header("Max-Forwards", "70").ok()?;
    m.push_header("From", &format!("{};tag=kept", session.from))
        .ok()?;
    m.push_header(
        "To",
        &format!("<{}>", String::from_utf8_lossy(&session.recipient)),
    )
    .ok()?;
    m.push_header("Call-ID", "kept").ok()?;
    m.push_header("CSeq", "1 MESSAGE").ok()?;
    m.push_header("Contact", &format!("<{}>", session.contact))
        .ok()?;
    if session.to_side == Side::Cpm {
        if let Some(c) = &session.conversation_id {
            m.push_header("Conversation-ID", c).ok()?;
        }
        if let Some(c) = &session.contribution_id {
            m.push_header("Contribution-ID", c).ok()?;
        }
    }
    m.set_body_with_type(Some(content_type), body).ok()?;
    Some(StoredMessage {
        recipient: session.recipient.clone(),
        to_side: session.to_side,
        kind,
        payload: m.serialize(),
        message_id: cpim.as_ref().and_then(|c| c.imdn_message_id().cloned()),
        conversation_id: session.conversation_id.clone().map(Bytes::from),
        contribution_id: session.contribution_id.clone().map(Bytes::from),
        date_time: cpim.as_ref().and_then(|c| c.datetime().cloned()),
        received_at_unix_ms: now_unix_ms,
        expires_at_unix_ms: now_unix_ms.saturating_add(session.max_age_ms),
        sender: session.sender.clone(),
    })
}

/// The SDP answer (RFC 3264) of the node standing in for a callee: its MSRP endpoint `path`,
/// passive (the relay connects, RFC 6135), accepting what the offer `offer` accepts.
pub fn mailbox_answer(offer: &[u8], path: &str, id: u64) -> Bytes {
    let text = String::from_utf8_lossy(offer);
    let mut accept = String::new();
    for line in text.lines() {
        if line.starts_with("a=accept-types:") || line.starts_with("a=accept-wrapped-types:") {
            accept.push_str(line.trim_end());
            accept.push_str("\r\n");
        }
    }
    if accept.is_empty() {
        accept.push_str("a=accept-types:message/cpim text/plain\r\n");
    }
    let port = path
        .split(':')
        .nth(2)
        .and_then(|p| p.split('/').next())
        .unwrap_or("9");
    Bytes::from(format!(
        "v=0\r\no=- {id} {id} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=message {port} TCP/MSRP *\r\n{accept}a=path:{path}\r\na=setup:passive\r\n"
    ))
}

/// Why a kept message cannot be sent again.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The stored bytes are not a SIP request any more (a store written by something else).
    #[error("stored payload is not a SIP request: {0}")]
    Payload(#[from] sip::SipError),
    /// A stored chat message has no request form yet.
    #[error("stored {0:?} cannot be delivered as a pager MESSAGE")]
    Kind(Kind),
    /// The stored bytes are a response.
    #[error("stored payload is a response")]
    NotRequest,
}

/// The request that delivers the kept message `m` now: its original request with a fresh
/// Call-ID and From tag, so that the recipient does not take a retry for a merged request
/// (RFC 3261 §8.2.2.2: same From tag, Call-ID and CSeq on a new branch gets 482). Towards the
/// CPM side it names the deferred-delivery service (`deferred_icsi`, from the mappings) in
/// P-Asserted-Service (RFC 6050): CPM 2.0 delivers stored messages as deferred messages.
pub fn delivery_request(
    m: &StoredMessage,
    ids: &mut dyn IdSource,
    limits: &sip::Limits,
    deferred_icsi: &str,
) -> Result<SipMessage, DeliveryError> {
    if !matches!(m.kind, Kind::Pager | Kind::Imdn) {
        return Err(DeliveryError::Kind(m.kind));
    }
    let mut msg = sip::parse_message(m.payload.clone(), limits)?;
    if msg.method().is_none() {
        return Err(DeliveryError::NotRequest);
    }
    // The node's Via of the first attempt: the sender adds its own.
    msg.remove_header("Via");
    let call_id = ids.fresh_id();
    msg.set_header("Call-ID", std::str::from_utf8(&call_id).unwrap_or("x"))?;
    if let Some(from) = msg.header("From")
        && let Ok(tagged) = crate::translate::addr::with_tag(from, Some(&text(&ids.fresh_id())))
    {
        msg.set_header("From", &tagged)?;
    }
    if m.to_side == Side::Cpm && m.kind == Kind::Pager {
        msg.remove_header("P-Preferred-Service");
        msg.set_header("P-Asserted-Service", deferred_icsi)?;
    }
    Ok(msg)
}

fn text(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `failed` delivery notification (RFC 5438 §7.2.1.1) owed to the sender of the kept
/// message `m` that expired unsent, as a pager MESSAGE in the recipient's network's form (from
/// the recipient to the sender), for the translator to carry back to the sender's device like
/// any notification. `None` when the message did not ask for negative delivery notifications
/// (or is itself a notification: RFC 5438 §7.1.1, no notification about a notification).
pub fn failed_notification(
    m: &StoredMessage,
    ids: &mut dyn IdSource,
    datetime: &str,
    node_contact: &str,
) -> Option<SipMessage> {
    if m.kind != Kind::Pager {
        return None;
    }
    let msg = sip::parse_message(m.payload.clone(), &sip::Limits::default()).ok()?;
    let ct = msg.content_type()?;
    if !media_type_is(ct.as_bytes(), CPIM_TYPE) {
        return None;
    }
    let cpim = Cpim::parse(msg.body().clone()).ok()?;
    let wants_negative = cpim.imdn_disposition_notification().iter().any(|v| {
        v.split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"negative-delivery"))
    });
    let message_id = cpim.imdn_message_id()?.clone();
    if !wants_negative {
        return None;
    }
    let recipient = text(&m.recipient);
    let sender = text(&m.sender.aor);
    let original_dt = cpim
        .datetime()
        .cloned()
        .or_else(|| m.date_time.clone())
        .unwrap_or_else(|| Bytes::copy_from_slice(datetime.as_bytes()));
    let imdn = Imdn::delivery_failed(
        message_id,
        original_dt,
        Some(m.recipient.clone()),
        DeliveryStatus::Failed,
    );
    let mut body = Cpim {
        headers: Vec::new(),
        content_headers: vec![
            (
                Bytes::from_static(b"Content-Type"),
                Bytes::from_static(IMDN_TYPE.as_bytes()),
            ),
            (
                Bytes::from_static(b"Content-Disposition"),
                Bytes::from_static(b"notification"),
            ),
        ],
        body: imdn.to_bytes(),
        layout: Default::default(),
    };
    body.headers.push(crate::wire::cpim::CpimHeader::new(
        None,
        b"From",
        format!("<{recipient}>").as_bytes(),
    ));
    body.headers.push(crate::wire::cpim::CpimHeader::new(
        None,
        b"To",
        format!("<{sender}>").as_bytes(),
    ));
    body.headers.push(crate::wire::cpim::CpimHeader::new(
        None,
        b"DateTime",
        datetime.as_bytes(),
    ));
    body.set_ns(IMDN_NS, "imdn", "Message-ID", &ids.fresh_id());
    let mut out = SipMessage::request(rsip::Method::Message, &sender).ok()?;
    let call_id = ids.fresh_id();
    let tag = ids.fresh_id();
    out.push_header("Max-Forwards", "70").ok()?;
    out.push_header("From", &format!("<{recipient}>;tag={}", text(&tag)))
        .ok()?;
    out.push_header("To", &format!("<{sender}>")).ok()?;
    out.push_header("Call-ID", &text(&call_id)).ok()?;
    out.push_header("CSeq", "1 MESSAGE").ok()?;
    out.push_header("Contact", &format!("<{node_contact}>"))
        .ok()?;
    out.set_body_with_type(Some(CPIM_TYPE), body.to_bytes())
        .ok()?;
    Some(out)
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A 2xx: delivered; remove it and go on.
    Delivered,
    /// Still not available (the policy's statuses, a timeout, a 5xx/6xx that may pass): wait
    /// and retry with backoff.
    Unavailable,
    /// Refused for good (a 4xx outside the policy, e.g. 403, 415, 488): remove it; the sender
    /// gets a `failed` notification when they asked for one.
    Rejected,
}

impl Answer {
    /// How the final status `status` of a delivery attempt towards a side with `policy` ends.
    pub fn of(status: u16, policy: &StorePolicy) -> Answer {
        match status {
            200..=299 => Answer::Delivered,
            s if policy.is_unavailable(s) => Answer::Unavailable,
            // 5xx/6xx: the far network's trouble, not the message's (RFC 3261 §21.5, §21.6).
            s if s >= 500 => Answer::Unavailable,
            _ => Answer::Rejected,
        }
    }
}

/// What the scheduler asks the core to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read up to `limit` messages of `user` after sequence number `after`
    /// ([`crate::store::Store::pending`]), then call [`Scheduler::fetched`].
    Fetch {
        /// The recipient.
        user: Bytes,
        /// The last sequence number seen.
        after: u64,
        /// How many.
        limit: usize,
    },
    /// Send this message now, then call [`Scheduler::answered`].
    Send(Box<Pending>),
    /// Remove this message ([`crate::store::Store::ack_delivered`]), then call
    /// [`Scheduler::acked`].
    Ack(MessageKey),
    /// The message was refused for good: send its `failed` notification if it asked for one.
    GiveUp(Box<Pending>),
    /// Nothing is kept for this user any more (a reg event subscription for them may end).
    Drained(Bytes),
}

#[derive(Debug)]
enum State {
    /// Nothing in flight; the next attempt is due at `due` (or when the user comes back).
    Waiting { due: Millis },
    /// In `ready`, waiting for room among the active users.
    Ready,
    /// A fetch is in flight.
    Fetching,
    /// This message was sent; its answer is awaited.
    Sending(Box<Pending>),
    /// Its removal is in flight.
    Acking,
}

#[derive(Debug)]
struct UserQueue {
    state: State,
    /// Failed attempts in a row (the backoff exponent).
    attempt: u32,
    /// Messages read and not sent yet, oldest first.
    buffer: VecDeque<Pending>,
    /// The last sequence number read.
    after: u64,
    /// The user came back while an attempt was in flight: go on at once after it.
    again: bool,
}

/// Limits and timings of the delivery schedule.
#[derive(Debug, Clone, Copy)]
pub struct ScheduleConfig {
    /// First retry after a failed attempt (ms).
    pub retry: RetrySchedule,
    /// Whether retry times are jittered per user (off: the full delay, for tests).
    /// Longest wait between attempts (ms).
    pub jitter: bool,
    /// Users being delivered to at once (the rest wait their turn): bounds the store reads
    /// and requests a mass return (a node restart, a registrar coming back) sets off.
    pub max_active: usize,
    /// Most users followed; beyond it a user is picked up again by the periodic scan.
    pub max_users: usize,
    /// Messages read per fetch.
    pub batch: usize,
}

/// The per-user delivery schedule: who is waiting for what, as plain data.
#[derive(Debug)]
pub struct Scheduler {
    config: ScheduleConfig,
    users: HashMap<Bytes, UserQueue>,
    /// Retry wake-ups (a user's entry is current only if its state still has that `due`).
    due: BinaryHeap<Reverse<(Millis, Bytes)>>,
    ready: VecDeque<Bytes>,
    active: usize,
}

impl Scheduler {
    /// An empty schedule.
    pub fn new(config: ScheduleConfig) -> Self {
        Scheduler {
            config,
            users: HashMap::new(),
            due: BinaryHeap::new(),
            ready: VecDeque::new(),
            active: 0,
        }
    }

    /// Users followed.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// A message was stored for `user` (the next hop said unavailable): try again after the
    /// first backoff, unless something is already planned.
    pub fn stored(&mut self, user: Bytes, now: Millis) {
        if self.users.contains_key(&user) || self.users.len() >= self.config.max_users {
            return;
        }
        let due = self
            .config
            .retry
            .next_due(now, 0, jitter(self.config.jitter, &user, 0));
        self.users
            .insert(user.clone(), queue(State::Waiting { due }));
        self.due.push(Reverse((due, user)));
    }

    /// `user` has messages waiting (found at start-up or by a scan): try now.
    pub fn resume(&mut self, user: Bytes, now: Millis) -> Vec<Action> {
        self.available(user, now)
    }

    /// `user` is available now (a registration, RFC 3680 NOTIFY or third-party REGISTER):
    /// deliver at once, whatever the backoff said.
    pub fn available(&mut self, user: Bytes, now: Millis) -> Vec<Action> {
        match self.users.get_mut(&user) {
            None => {
                if self.users.len() >= self.config.max_users {
                    return Vec::new();
                }
                self.users.insert(user.clone(), queue(State::Ready));
                self.ready.push_back(user);
            }
            Some(q) => {
                q.attempt = 0;
                match q.state {
                    State::Waiting { .. } => {
                        q.state = State::Ready;
                        self.ready.push_back(user);
                    }
                    State::Ready => {}
                    _ => q.again = true,
                }
            }
        }
        self.start_ready(now)
    }

    /// Wake-ups due at `now`.
    pub fn on_time(&mut self, now: Millis) -> Vec<Action> {
        while let Some(Reverse((at, _))) = self.due.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, user))) = self.due.pop() else {
                break;
            };
            if let Some(q) = self.users.get_mut(&user)
                && matches!(q.state, State::Waiting { due } if due == at)
            {
                q.state = State::Ready;
                self.ready.push_back(user);
            }
        }
        self.start_ready(now)
    }

    /// When the next wake-up is due.
    pub fn next_due(&self) -> Option<Millis> {
        self.due.peek().map(|Reverse((at, _))| *at)
    }

    fn start_ready(&mut self, now: Millis) -> Vec<Action> {
        let mut actions = Vec::new();
        while self.active < self.config.max_active {
            let Some(user) = self.ready.pop_front() else {
                break;
            };
            let Some(q) = self.users.get_mut(&user) else {
                continue;
            };
            if !matches!(q.state, State::Ready) {
                continue;
            }
            self.active += 1;
            q.state = State::Fetching;
            q.after = 0;
            q.buffer.clear();
            actions.push(Action::Fetch {
                user,
                after: 0,
                limit: self.config.batch,
            });
        }
        let _ = now;
        actions
    }

    /// The answer to a [`Action::Fetch`] for `user`: `Ok(messages)` or the store failed.
    pub fn fetched(
        &mut self,
        user: &Bytes,
        result: Result<Vec<Pending>, ()>,
        now: Millis,
    ) -> Vec<Action> {
        let Some(q) = self.users.get_mut(user) else {
            return Vec::new();
        };
        if !matches!(q.state, State::Fetching) {
            return Vec::new();
        }
        match result {
            Ok(list) if list.is_empty() => {
                // Nothing (more) waiting: done with this user.
                self.users.remove(user);
                self.active = self.active.saturating_sub(1);
                let mut actions = vec![Action::Drained(user.clone())];
                actions.extend(self.start_ready(now));
                actions
            }
            Ok(list) => {
                q.after = list.last().map_or(q.after, |p| p.key.seq);
                q.buffer.extend(list);
                self.send_next(user, now)
            }
            Err(()) => self.back_off(user, now),
        }
    }

    fn send_next(&mut self, user: &Bytes, now: Millis) -> Vec<Action> {
        let batch = self.config.batch;
        let Some(q) = self.users.get_mut(user) else {
            return Vec::new();
        };
        match q.buffer.pop_front() {
            Some(p) => {
                let p = Box::new(p);
                q.state = State::Sending(p.clone());
                vec![Action::Send(p)]
            }
            None => {
                q.state = State::Fetching;
                let _ = now;
                vec![Action::Fetch {
                    user: user.clone(),
                    after: q.after,
                    limit: batch,
                }]
            }
        }
    }

    fn back_off(&mut self, user: &Bytes, now: Millis) -> Vec<Action> {
        let Some(q) = self.users.get_mut(user) else {
            return Vec::new();
        };
        self.active = self.active.saturating_sub(1);
        q.buffer.clear();
        if std::mem::take(&mut q.again) {
            q.attempt = 0;
            q.state = State::Ready;
            self.ready.push_back(user.clone());
        } else {
            let jitter = jitter(self.config.jitter, user, q.attempt);
            let due = self.config.retry.next_due(now, q.attempt, jitter);
            q.attempt = q.attempt.saturating_add(1);
            q.state = State::Waiting { due };
            self.due.push(Reverse((due, user.clone())));
        }
        self.start_ready(now)
    }

    /// The final answer to the [`Action::Send`] of message `key` of `user`.
    pub fn answered(
        &mut self,
        user: &Bytes,
        key: &MessageKey,
        answer: Answer,
        now: Millis,
    ) -> Vec<Action> {
        let Some(q) = self.users.get_mut(user) else {
            return Vec::new();
        };
        let pending = match &q.state {
            State::Sending(p) if p.key == *key => p.clone(),
            _ => return Vec::new(),
        };
        match answer {
            Answer::Delivered => {
                q.attempt = 0;
                q.state = State::Acking;
                vec![Action::Ack(key.clone())]
            }
            Answer::Rejected => {
                q.state = State::Acking;
                vec![Action::Ack(key.clone()), Action::GiveUp(pending)]
            }
            Answer::Unavailable => self.back_off(user, now),
        }
    }

    /// The answer to an [`Action::Ack`]: go on with the next message, or back off when the
    /// store could not remove it (it is sent again later; the recipient drops the copy).
    pub fn acked(&mut self, user: &Bytes, ok: bool, now: Millis) -> Vec<Action> {
        let Some(q) = self.users.get_mut(user) else {
            return Vec::new();
        };
        if !matches!(q.state, State::Acking) {
            return Vec::new();
        }
        if ok {
            self.send_next(user, now)
        } else {
            self.back_off(user, now)
        }
    }
}

fn queue(state: State) -> UserQueue {
    UserQueue {
        state,
        attempt: 0,
        buffer: VecDeque::new(),
        after: 0,
        again: false,
    }
}

/// The jitter of `user`'s retry number `attempt`: a hash, so that users who failed together
/// spread out (equal jitter, `availability::RetrySchedule`); off: the full delay.
fn jitter(enabled: bool, user: &Bytes, attempt: u32) -> Jitter {
    if !enabled {
        return Jitter(u16::MAX);
    }
    use std::hash::{BuildHasher, Hasher};
    let mut h =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .build_hasher();
    h.write(user);
    h.write_u32(attempt);
    Jitter(u16::try_from(h.finish() & 0xffff).unwrap_or(u16::MAX))
}

#[cfg(test)]
#[path = "deferred_tests.rs"]
mod tests;
