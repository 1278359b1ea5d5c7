//! Availability: when a user the store holds messages for can be reached again (issue 7).
//!
//! Three sources, each sans-IO (no socket, no clock, no random source: the caller passes
//! `now`, fresh identities and a seed), each optional in the config (`[availability]`):
//!
//! 1. [`RegEventWatcher`]: RFC 3680 `reg` event subscriptions to the registrar, one per watched
//!    address-of-record or one for the whole list, each a [`RegEventSubscription`] (an RFC 6665
//!    subscriber dialog: SUBSCRIBE, refresh before expiry, 423 / failure handling, NOTIFY
//!    processing with RFC 3680 §5.2 version ordering and full / partial state).
//! 2. [`third_party_register`]: a 3GPP S-CSCF's third-party REGISTER to the node as an
//!    application server (TS 24.229 §5.4.1.7): the user in To, `Expires: 0` for deregistration.
//! 3. [`RetrySchedule`]: the fallback, exponential backoff with jitter and a cap, for store
//!    delivery attempts when nothing else tells.
//!
//! What comes out is plain data: SIP requests to send (without Via: the core adds its own and
//! runs the client transaction), the status to answer a NOTIFY or REGISTER with, and
//! [`AvailabilityEvent`]s. Addresses of record in events are canonical
//! ([`crate::translate::addr::aor`]: scheme and host lower-cased, no port or parameters).
//!
//! # How the core drives it
//! - Start: `WatcherConfig::from_config(&config.availability, from, contact)`; when `Some`,
//!   `RegEventWatcher::new(cfg, random_seed, &mut ids, now)`. `from` is the node's identity
//!   and `contact` its Contact on the registrar's side (`registrar_on_cpm`).
//! - Timer: after every call below, `handle_timeout(now, &mut ids)` and send each SUBSCRIBE
//!   it returns with `send_request(registrar_side, m, None)` (the core adds Via and runs the
//!   client transaction); then arm one timer at `poll_timeout()` that does the same.
//! - A final response of such a SUBSCRIBE client transaction: `on_response(&resp, now)`; Timer
//!   F without one: `on_request_timeout(call_id, now)`.
//! - A NOTIFY for which `owns(&req)` is true (checked before the translator sees it):
//!   `let out = on_notify(&req, now)`, answer with `out.response(&req)` through the server
//!   transaction, then apply `out.events`.
//! - A REGISTER: `third_party_register(&req, config.availability.third_party_register)`,
//!   answer `out.response(&req)` plus the node's To tag, apply `out.event`.
//! - Per-user mode: `watch(aor, ..)` when the store first keeps a message for a user,
//!   `unwatch(aor)` (send what it returns) when the user's queue is empty again.
//! - Events: `Registered { aor, .. }` -> deliver what is stored for `aor` now (the store's
//!   `node::deferred::Scheduler` resets its backoff); `Unregistered` -> keep storing. Without
//!   either (no registrar, no third-party REGISTER), the scheduler retries each user on the
//!   [`RetrySchedule`]. [`RegEventWatcher::is_available`] answers "no registration known".
//!
//! Cost: `poll_timeout` and `handle_timeout` walk every subscription (fine for thousands; a
//! timer wheel would be needed for millions of per-user subscriptions).

use std::collections::HashMap;

use bytes::Bytes;

use crate::time::Millis;
use crate::translate::addr::{aor, uri_of};
use crate::translate::conversation::IdSource;
use crate::translate::params::split_top_iter;
use crate::wire::reginfo::{self, Contact, ContactState, DocState, Reginfo, RegistrationState};
use crate::wire::sip::SipMessage;
use crate::wire::{Answer, WireError};

/// What the node learns about a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AvailabilityEvent {
    /// The user can be reached: deliver what is stored. `contacts` are the registered devices
    /// when the source knows them (reg event), empty when it does not (third-party REGISTER:
    /// the S-CSCF routes by the AOR).
    Registered { aor: String, contacts: Vec<Contact> },
    /// The user cannot be reached: keep storing.
    Unregistered { aor: String },
}

// ---------------------------------------------------------------------------------------------
// Retry schedule.

/// A fraction in `[0, 1]` (`Jitter(u16::MAX)` is 1) drawn by the caller: this module reads no
/// random source, so the same inputs give the same times in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Jitter(pub u16);

impl Jitter {
    /// `v * self`, rounded down.
    fn scale(self, v: u64) -> u64 {
        let x = u128::from(v) * u128::from(self.0) / u128::from(u16::MAX);
        u64::try_from(x).unwrap_or(v)
    }
}

/// Exponential backoff with a cap and "equal jitter": the delay before retry number `attempt`
/// (0 for the first retry) is `d = min(max, initial * 2^attempt)`, of which half is fixed and
/// half scaled by the jitter, so retries of many users spread out but never come sooner than
/// `d / 2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySchedule {
    pub initial_ms: u64,
    pub max_ms: u64,
}

impl RetrySchedule {
    /// The delay before retry number `attempt`, in milliseconds.
    pub fn delay_ms(&self, attempt: u32, jitter: Jitter) -> u64 {
        let shift = attempt.min(63);
        let base = match self.initial_ms.checked_shl(shift) {
            Some(v) if v >> shift == self.initial_ms => v,
            _ => u64::MAX,
        }
        .min(self.max_ms);
        let fixed = base / 2;
        fixed.saturating_add(jitter.scale(base - fixed))
    }

    /// When retry number `attempt` is due, from `now`.
    pub fn next_due(&self, now: Millis, attempt: u32, jitter: Jitter) -> Millis {
        now.after(self.delay_ms(attempt, jitter))
    }
}

/// A small deterministic generator (xorshift64*) for subscription retry jitter, seeded by the
/// caller.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    fn jitter(&mut self) -> Jitter {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        Jitter((x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 48) as u16)
    }
}

// ---------------------------------------------------------------------------------------------
// Third-party REGISTER.

/// How to answer a third-party REGISTER, and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterOutcome {
    pub status: u16,
    pub reason: &'static str,
    /// Header fields to add to the response (besides those `response_to` copies).
    pub headers: Vec<(&'static str, String)>,
    pub event: Option<AvailabilityEvent>,
}

impl RegisterOutcome {
    fn refuse(status: u16, reason: &'static str) -> Self {
        RegisterOutcome {
            status,
            reason,
            headers: Vec::new(),
            event: None,
        }
    }

    /// The response to `request`: Via, From, To, Call-ID, CSeq copied, then `headers`. The
    /// caller adds the To tag (RFC 3261 §8.2.6.2), as for every response the node makes.
    pub fn response(&self, request: &SipMessage) -> SipMessage {
        let mut r = request.response_to(self.status, self.reason);
        for (name, value) in &self.headers {
            // Values are ours (numbers): they always pass the header check.
            let _ = r.push_header(name, value);
        }
        r
    }
}

/// `delta-seconds` (RFC 3261 §25.1); values over 2^32-1 mean 2^32-1 (§20.19 via §10.2.1.1).
fn delta_seconds(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        s.parse::<u64>()
            .map_or(u32::MAX, |v| u32::try_from(v).unwrap_or(u32::MAX)),
    )
}

/// The value of header parameter `name` of the first element of a From/To/Contact value:
/// the parameters after `<URI>` or after an `addr-spec` (RFC 3261 §20.10); commas and
/// semicolons inside quotes or `<...>` do not split.
fn header_param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    let first = split_top_iter(value, b',').next()?.ok()?;
    split_top_iter(first, b';').skip(1).find_map(|p| {
        let p = p.ok()?;
        let (n, v) = p.split_once('=').unwrap_or((p, ""));
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"'))
    })
}

/// A third-party REGISTER (3GPP TS 24.229 §5.4.1.7: the S-CSCF registers the served user,
/// named in To, at the application server) made into an answer and an event.
///
/// - `accept` false (the config says no): 403.
/// - No To, or a To without a SIP, SIPS or tel URI: 400.
/// - The registration's duration: the Contact's `expires` parameter, else the `Expires`
///   header (RFC 3261 §10.2.1.1; TS 24.229 always sends `Expires`); neither, or not a number:
///   400. `Contact: *` must come with `Expires: 0` (RFC 3261 §10.2.2).
/// - 0: `Unregistered`; otherwise `Registered` with no contacts (the S-CSCF's Contact is not the
///   user's device), and the 200 carries `Expires` with the granted duration.
pub fn third_party_register(request: &SipMessage, accept: bool) -> RegisterOutcome {
    if !accept {
        return RegisterOutcome::refuse(403, "Third-party registration not accepted");
    }
    let Some(to) = request.header("To") else {
        return RegisterOutcome::refuse(400, "Missing To");
    };
    let uri = uri_of(to);
    let scheme_ok = ["sip:", "sips:", "tel:"].iter().any(|s| {
        uri.get(..s.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(s))
            && uri.len() > s.len()
    });
    if !scheme_ok {
        return RegisterOutcome::refuse(400, "To is not a SIP, SIPS or tel URI");
    }
    let contact = request.header("Contact");
    let star = contact.is_some_and(|c| c.trim() == "*");
    let from_contact = contact
        .filter(|_| !star)
        .and_then(|c| header_param(c, "expires"));
    let expires = match (from_contact, request.header("Expires")) {
        (Some(v), _) | (None, Some(v)) => match delta_seconds(v) {
            Some(n) => n,
            None => return RegisterOutcome::refuse(400, "Expires is not a number"),
        },
        (None, None) => return RegisterOutcome::refuse(400, "Missing Expires"),
    };
    if star && expires != 0 {
        // RFC 3261 §10.3 step 6: "*" only with Expires 0.
        return RegisterOutcome::refuse(400, "Contact * requires Expires: 0");
    }
    let user = aor(uri);
    let event = if expires == 0 {
        AvailabilityEvent::Unregistered { aor: user }
    } else {
        AvailabilityEvent::Registered {
            aor: user,
            contacts: Vec::new(),
        }
    };
    RegisterOutcome {
        status: 200,
        reason: "OK",
        headers: vec![("Expires", expires.to_string())],
        event: Some(event),
    }
}

// ---------------------------------------------------------------------------------------------
// Reg event subscription (RFC 3680 over RFC 6665).

/// How the node subscribes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeConfig {
    /// The node's identity: the From of its SUBSCRIBEs (e.g. `sip:iwf@cpm.example.net`).
    pub from: String,
    /// The node's Contact (where NOTIFYs come, RFC 6665 §4.1.2.1).
    pub contact: String,
    /// Expires asked for, in seconds (RFC 3680 §4.4 suggests 3761).
    pub expires_s: u32,
    /// Refresh this long before expiry, in seconds.
    pub refresh_margin_s: u32,
    /// Backoff of new subscription attempts after a failure.
    pub retry: RetrySchedule,
}

/// Where a subscription stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubState {
    /// Nothing in flight; a SUBSCRIBE goes when `due`.
    Waiting,
    /// The first SUBSCRIBE of a dialog is in flight.
    Subscribing,
    /// Accepted; the notifier has not authorized it yet (`Subscription-State: pending`).
    Pending,
    /// Accepted and active.
    Active,
    /// Ended by the notifier or by failure; a new one goes when `due`, if ever.
    Terminated,
}

/// A registration as the subscriber sees it (RFC 3680 §5.2): its state and its contacts by id.
#[derive(Debug, Clone)]
struct RegView {
    state: RegistrationState,
    contacts: Vec<Contact>,
}

impl RegView {
    fn available(&self) -> bool {
        self.state == RegistrationState::Active
            && self
                .contacts
                .iter()
                .any(|c| c.state == ContactState::Active)
    }
}

/// Most contacts kept per AOR (a reginfo body is bounded the same way).
const MAX_CONTACTS: usize = 64;

/// One RFC 6665 subscriber dialog for the `reg` event package.
#[derive(Debug, Clone)]
pub struct RegEventSubscription {
    /// Request-URI and To of a new subscription: the watched AOR or the registrar.
    target: String,
    call_id: Bytes,
    local_tag: Bytes,
    remote_tag: Option<String>,
    remote_target: Option<String>,
    route_set: Vec<String>,
    cseq: u32,
    /// CSeq of the SUBSCRIBE in flight and whether it ends the subscription (Expires: 0).
    in_flight: Option<(u32, bool)>,
    expires_s: u32,
    state: SubState,
    due: Option<Millis>,
    failures: u32,
    /// Last reginfo version applied in this dialog (RFC 3680 §5.2).
    version: Option<u64>,
    view: HashMap<String, RegView>,
    max_view: usize,
}

/// How to answer a NOTIFY, and what it said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyOutcome {
    pub status: u16,
    pub reason: &'static str,
    pub events: Vec<AvailabilityEvent>,
}

impl NotifyOutcome {
    fn answer(status: u16, reason: &'static str) -> Self {
        NotifyOutcome {
            status,
            reason,
            events: Vec::new(),
        }
    }

    /// The response to `notify` (Via, From, To, Call-ID, CSeq copied; the To of an in-dialog
    /// NOTIFY already has our tag).
    pub fn response(&self, notify: &SipMessage) -> SipMessage {
        notify.response_to(self.status, self.reason)
    }
}

/// `Subscription-State` (RFC 6665 §8.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubscriptionState<'a> {
    Active(Option<u32>),
    Pending(Option<u32>),
    Terminated {
        reason: Option<&'a str>,
        retry_after: Option<u32>,
    },
}

fn subscription_state(v: &str) -> Option<SubscriptionState<'_>> {
    let mut parts = v.split(';');
    let value = parts.next()?.trim();
    let mut expires = None;
    let mut reason = None;
    let mut retry_after = None;
    for p in parts {
        let (n, val) = p.split_once('=').unwrap_or((p, ""));
        let n = n.trim();
        if n.eq_ignore_ascii_case("expires") {
            expires = delta_seconds(val);
        } else if n.eq_ignore_ascii_case("reason") {
            reason = Some(val.trim());
        } else if n.eq_ignore_ascii_case("retry-after") {
            retry_after = delta_seconds(val);
        }
    }
    if value.eq_ignore_ascii_case("active") {
        Some(SubscriptionState::Active(expires))
    } else if value.eq_ignore_ascii_case("pending") {
        Some(SubscriptionState::Pending(expires))
    } else if value.eq_ignore_ascii_case("terminated") {
        Some(SubscriptionState::Terminated {
            reason,
            retry_after,
        })
    } else {
        // RFC 6665 §8.2.3: an unknown value is treated as "active" (extensions).
        Some(SubscriptionState::Active(expires))
    }
}

/// The event package name of an `Event` value (`reg;id=1` -> `reg`).
fn event_package(v: &str) -> &str {
    v.split(';').next().unwrap_or_default().trim()
}

impl RegEventSubscription {
    /// A subscription to `target` (an AOR, or the registrar for a list), its first SUBSCRIBE
    /// due at `now`.
    pub fn new(target: &str, ids: &mut impl IdSource, now: Millis, cfg: &SubscribeConfig) -> Self {
        RegEventSubscription {
            target: target.to_string(),
            call_id: ids.fresh_id(),
            local_tag: ids.fresh_id(),
            remote_tag: None,
            remote_target: None,
            route_set: Vec::new(),
            cseq: 0,
            in_flight: None,
            expires_s: cfg.expires_s,
            state: SubState::Waiting,
            due: Some(now),
            failures: 0,
            version: None,
            view: HashMap::new(),
            max_view: 65_536,
        }
    }

    pub fn state(&self) -> SubState {
        self.state
    }

    pub fn call_id(&self) -> &[u8] {
        &self.call_id
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    /// When [`handle_timeout`](Self::handle_timeout) has something to send.
    pub fn poll_timeout(&self) -> Option<Millis> {
        if self.in_flight.is_some() {
            None
        } else {
            self.due
        }
    }

    /// Whether `aor` (canonical) can be reached, as far as this subscription knows.
    pub fn is_available(&self, aor: &str) -> Option<bool> {
        self.view.get(aor).map(RegView::available)
    }

    /// The SUBSCRIBE due at `now`, if any.
    pub fn handle_timeout(
        &mut self,
        now: Millis,
        cfg: &SubscribeConfig,
        ids: &mut impl IdSource,
    ) -> Option<SipMessage> {
        if self.in_flight.is_some() || self.due.is_none_or(|d| d > now) {
            return None;
        }
        if self.state == SubState::Terminated || self.state == SubState::Waiting {
            // A new subscription is a new dialog (RFC 6665 §4.1.2.4, §4.2.2).
            if self.remote_tag.is_some() || self.state == SubState::Terminated {
                self.reset_dialog(ids);
            }
        }
        self.due = None;
        let initial = self.remote_tag.is_none();
        if initial {
            self.state = SubState::Subscribing;
        }
        let m = self.subscribe(self.expires_s, cfg);
        if m.is_none() {
            // Our own configuration makes no valid request: try again later, not in a loop.
            self.schedule_retry(now, cfg, None, &mut Rng::new(now.0));
        }
        m
    }

    /// The un-SUBSCRIBE (Expires: 0, RFC 6665 §4.1.2.3) when a dialog exists.
    pub fn unsubscribe(&mut self, cfg: &SubscribeConfig) -> Option<SipMessage> {
        self.remote_tag.as_ref()?;
        self.due = None;
        self.state = SubState::Terminated;
        self.subscribe(0, cfg)
    }

    fn reset_dialog(&mut self, ids: &mut impl IdSource) {
        self.call_id = ids.fresh_id();
        self.local_tag = ids.fresh_id();
        self.remote_tag = None;
        self.remote_target = None;
        self.route_set.clear();
        self.cseq = 0;
        self.version = None;
        self.state = SubState::Waiting;
    }

    /// Build a SUBSCRIBE in this dialog (or starting it), CSeq incremented (RFC 3261 §12.2.1.1).
    fn subscribe(&mut self, expires: u32, cfg: &SubscribeConfig) -> Option<SipMessage> {
        self.cseq = self.cseq.wrapping_add(1).max(1);
        let uri = self.remote_target.as_deref().unwrap_or(&self.target);
        let mut m = SipMessage::request(rsip::Method::Subscribe, uri).ok()?;
        for r in &self.route_set {
            m.push_header("Route", r).ok()?;
        }
        let local_tag = String::from_utf8_lossy(&self.local_tag);
        let call_id = String::from_utf8_lossy(&self.call_id);
        m.push_header("Max-Forwards", "70").ok()?;
        m.push_header("From", &format!("<{}>;tag={local_tag}", cfg.from))
            .ok()?;
        let to = match &self.remote_tag {
            Some(t) => format!("<{}>;tag={t}", self.target),
            None => format!("<{}>", self.target),
        };
        m.push_header("To", &to).ok()?;
        m.push_header("Call-ID", &call_id).ok()?;
        m.push_header("CSeq", &format!("{} SUBSCRIBE", self.cseq))
            .ok()?;
        m.push_header("Contact", &format!("<{}>", cfg.contact))
            .ok()?;
        m.push_header("Event", reginfo::EVENT_PACKAGE).ok()?;
        m.push_header("Accept", reginfo::CONTENT_TYPE).ok()?;
        m.push_header("Expires", &expires.to_string()).ok()?;
        self.in_flight = Some((self.cseq, expires == 0));
        Some(m)
    }

    /// The refresh time for a subscription granted `expires` seconds at `now`: `margin` before
    /// expiry, or at half the duration when it is too short for the margin.
    fn refresh_at(now: Millis, expires: u32, cfg: &SubscribeConfig) -> Millis {
        let e = u64::from(expires) * 1000;
        let margin = u64::from(cfg.refresh_margin_s) * 1000;
        let lead = if margin.saturating_mul(2) >= e {
            e / 2
        } else {
            margin
        };
        now.after(e - lead)
    }

    fn schedule_retry(
        &mut self,
        now: Millis,
        cfg: &SubscribeConfig,
        at_least_s: Option<u32>,
        rng: &mut Rng,
    ) {
        let backoff = cfg.retry.delay_ms(self.failures, rng.jitter());
        let floor = at_least_s.map_or(0, |s| u64::from(s) * 1000);
        self.failures = self.failures.saturating_add(1);
        self.state = SubState::Terminated;
        self.in_flight = None;
        self.due = Some(now.after(backoff.max(floor)));
    }

    /// A response to our SUBSCRIBE with CSeq `seq` (RFC 6665 §4.1.2.1, §4.1.2.2). Returns false
    /// when it is not for the request in flight (a stray or late response: ignored).
    fn on_response(
        &mut self,
        resp: &SipMessage,
        now: Millis,
        cfg: &SubscribeConfig,
        rng: &mut Rng,
    ) -> bool {
        let Some(status) = resp.status_code() else {
            return false;
        };
        let Some(cseq) = resp.cseq() else {
            return false;
        };
        let Some((seq, ending)) = self.in_flight else {
            return false;
        };
        if cseq.seq != seq || !cseq.method.eq_ignore_ascii_case("SUBSCRIBE") {
            return false;
        }
        if status < 200 {
            return true;
        }
        self.in_flight = None;
        if ending {
            self.state = SubState::Terminated;
            self.due = None;
            return true;
        }
        match status {
            200..=299 => {
                if self.remote_tag.is_none() {
                    // The 2xx establishes the dialog (RFC 6665 §4.1.2.1, RFC 3261 §12.1.2):
                    // remote tag from To, target from Contact, route set from Record-Route
                    // in reverse order.
                    self.remote_tag = resp.to_tag().map(str::to_string);
                    if let Some(c) = resp.header("Contact") {
                        self.remote_target = Some(uri_of(c).to_string());
                    }
                    let mut rr: Vec<String> = resp
                        .header_all("Record-Route")
                        .map(str::to_string)
                        .collect();
                    rr.reverse();
                    self.route_set = rr;
                }
                if matches!(self.state, SubState::Subscribing | SubState::Waiting) {
                    self.state = SubState::Pending;
                }
                let granted = resp
                    .header("Expires")
                    .and_then(delta_seconds)
                    .unwrap_or(self.expires_s)
                    .min(self.expires_s.max(1));
                self.failures = 0;
                if granted == 0 {
                    // Accepted but already over (a 2xx with Expires 0): start again later.
                    self.schedule_retry(now, cfg, None, rng);
                } else {
                    self.due = Some(Self::refresh_at(now, granted, cfg));
                }
            }
            423 => {
                // RFC 6665 §4.1.2.1 / RFC 3261 §10.2.8: ask again with at least Min-Expires.
                match resp.header("Min-Expires").and_then(delta_seconds) {
                    Some(min) if min > self.expires_s => {
                        self.expires_s = min;
                        self.due = Some(now);
                        if self.remote_tag.is_none() {
                            self.state = SubState::Waiting;
                        }
                    }
                    _ => self.schedule_retry(now, cfg, None, rng),
                }
            }
            _ => {
                // 481 to a refresh: the dialog is gone; any other failure, a timeout (408)
                // included: the subscription is over (RFC 6665 §4.1.2.2). A new one after
                // backoff, no sooner than Retry-After (RFC 3261 §20.33).
                let retry_after = resp
                    .header("Retry-After")
                    .and_then(|v| delta_seconds(v.split([';', '(']).next().unwrap_or_default()));
                self.schedule_retry(now, cfg, retry_after, rng);
            }
        }
        true
    }

    /// The client transaction of the request in flight timed out (RFC 3261 §17.1.2.2 Timer F):
    /// as a 408.
    fn on_request_timeout(&mut self, now: Millis, cfg: &SubscribeConfig, rng: &mut Rng) {
        if let Some((_, ending)) = self.in_flight.take() {
            if ending {
                self.state = SubState::Terminated;
                self.due = None;
            } else {
                self.schedule_retry(now, cfg, None, rng);
            }
        }
    }

    /// Whether `notify` belongs to this dialog: our Call-ID and tag; the notifier's tag when we
    /// know it (RFC 6665 §4.1.3, RFC 3261 §12.2.2).
    fn matches(&self, notify: &SipMessage) -> bool {
        notify.call_id().map(str::as_bytes) == Some(&self.call_id[..])
            && notify.to_tag().map(str::as_bytes) == Some(&self.local_tag[..])
            && match (&self.remote_tag, notify.from_tag()) {
                (Some(ours), Some(theirs)) => ours == theirs,
                (None, _) => true,
                (Some(_), None) => false,
            }
    }

    /// A NOTIFY of this dialog.
    fn on_notify(
        &mut self,
        notify: &SipMessage,
        now: Millis,
        cfg: &SubscribeConfig,
        rng: &mut Rng,
    ) -> NotifyOutcome {
        if notify
            .header("Event")
            .is_none_or(|e| !event_package(e).eq_ignore_ascii_case(reginfo::EVENT_PACKAGE))
        {
            // RFC 6665 §8.2.4 / §4.1.3: not the package we subscribed to.
            return NotifyOutcome::answer(489, "Bad Event");
        }
        let Some(sub_state) = notify
            .header("Subscription-State")
            .and_then(subscription_state)
        else {
            return NotifyOutcome::answer(400, "Missing Subscription-State");
        };
        let body = notify.body();
        let doc = if body.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            let ct = notify.header("Content-Type").unwrap_or_default();
            let mime = ct.split(';').next().unwrap_or_default().trim();
            if !mime.eq_ignore_ascii_case(reginfo::CONTENT_TYPE) {
                return NotifyOutcome::answer(415, "Unsupported Media Type");
            }
            match reginfo::parse(body.clone()) {
                Ok(d) => Some(d),
                Err(e) => {
                    let status = match e.answer() {
                        Answer::Status(s) => s,
                        Answer::Drop => 400,
                    };
                    let reason = match status {
                        413 => "Request Entity Too Large",
                        415 => "Unsupported Media Type",
                        _ => "Bad Request",
                    };
                    return NotifyOutcome::answer(status, reason);
                }
            }
        };
        // A NOTIFY may come before the 2xx: it establishes the dialog (RFC 6665 §4.1.2.4).
        if self.remote_tag.is_none() {
            self.remote_tag = notify.from_tag().map(str::to_string);
            if let Some(c) = notify.header("Contact") {
                self.remote_target = Some(uri_of(c).to_string());
            }
            self.route_set = notify
                .header_all("Record-Route")
                .map(str::to_string)
                .collect();
        }
        let mut out = NotifyOutcome::answer(200, "OK");
        if let Some(doc) = doc {
            out.events = self.apply(doc, now);
        }
        match sub_state {
            SubscriptionState::Active(expires) | SubscriptionState::Pending(expires) => {
                self.state = if matches!(sub_state, SubscriptionState::Active(_)) {
                    SubState::Active
                } else {
                    SubState::Pending
                };
                self.failures = 0;
                if let Some(e) = expires
                    && self.in_flight.is_none()
                    && self.due.is_some()
                {
                    // The notifier may shorten the subscription (RFC 6665 §4.1.3).
                    let at = Self::refresh_at(now, e.max(1), cfg);
                    if self.due.is_none_or(|d| at < d) {
                        self.due = Some(at);
                    }
                }
            }
            SubscriptionState::Terminated {
                reason,
                retry_after,
            } => {
                // RFC 6665 §4.1.3 / RFC 3265 §3.2.4: "deactivated" and "timeout": subscribe
                // again at once; "probation" and "giveup": after retry-after; "rejected",
                // "noresource", "invariant": not worth retrying soon, so at the longest
                // backoff (an operator may fix the cause, and a node must not give up for good).
                self.in_flight = None;
                self.state = SubState::Terminated;
                match reason.map(str::to_ascii_lowercase).as_deref() {
                    Some("deactivated") | Some("timeout") => {
                        self.failures = 0;
                        self.due = Some(now);
                    }
                    Some("rejected") | Some("noresource") | Some("invariant") => {
                        self.failures = u32::MAX;
                        self.schedule_retry(now, cfg, retry_after, rng);
                    }
                    _ => self.schedule_retry(now, cfg, retry_after, rng),
                }
            }
        }
        out
    }

    /// Apply a reginfo document (RFC 3680 §5.2) and return what changed for availability.
    fn apply(&mut self, doc: Reginfo, now: Millis) -> Vec<AvailabilityEvent> {
        // RFC 3680 §5.2: a version not above the last one is a retransmission or a reordered
        // NOTIFY: discarded. Partial state with a gap (a NOTIFY was lost), or before any full
        // state, is applied as far as it goes, and a refresh SUBSCRIBE makes the notifier send
        // full state ("SHOULD generate a refresh request to trigger a full state
        // notification").
        if self.version.is_some_and(|v| doc.version <= v) {
            return Vec::new();
        }
        let gap = doc.state == DocState::Partial
            && self
                .version
                .is_none_or(|v| doc.version > v.saturating_add(1));
        if gap && self.in_flight.is_none() && self.remote_tag.is_some() {
            self.due = Some(now);
        }
        self.version = Some(doc.version);
        let before: HashMap<String, bool> = self
            .view
            .iter()
            .map(|(k, v)| (k.clone(), v.available()))
            .collect();
        if doc.state == DocState::Full {
            self.view.clear();
        }
        for r in doc.registrations {
            let key = aor(uri_of(&String::from_utf8_lossy(&r.aor)));
            if !self.view.contains_key(&key) && self.view.len() >= self.max_view {
                continue;
            }
            let entry = self.view.entry(key).or_insert_with(|| RegView {
                state: r.state,
                contacts: Vec::new(),
            });
            entry.state = r.state;
            if doc.state == DocState::Full || r.state == RegistrationState::Terminated {
                entry.contacts.clear();
            }
            for c in r.contacts {
                entry.contacts.retain(|k| k.id != c.id);
                if c.state == ContactState::Active && entry.contacts.len() < MAX_CONTACTS {
                    entry.contacts.push(c);
                }
            }
        }
        let mut events = Vec::new();
        let mut keys: Vec<&String> = self.view.keys().chain(before.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let was = before.get(k).copied();
            let is = self.view.get(k);
            match (was, is) {
                (Some(true), Some(v)) if v.available() => {}
                (_, Some(v)) if v.available() => events.push(AvailabilityEvent::Registered {
                    aor: k.clone(),
                    contacts: v.contacts.clone(),
                }),
                (Some(false), Some(_)) => {}
                (_, Some(_)) | (Some(true), None) => {
                    events.push(AvailabilityEvent::Unregistered { aor: k.clone() })
                }
                (_, None) => {}
            }
        }
        events
    }
}

// ---------------------------------------------------------------------------------------------
// The set of subscriptions the node keeps.

/// One subscription per watched AOR, or one for the whole list at the registrar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMode {
    /// SUBSCRIBE to each watched AOR (Request-URI and To are the AOR, RFC 3680 §4.1).
    PerUser,
    /// One SUBSCRIBE to this URI (a registrar or resource list that reports every user the
    /// node serves).
    List(String),
}

/// The watcher's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatcherConfig {
    pub subscribe: SubscribeConfig,
    pub mode: WatchMode,
    /// Most subscriptions at once (per-user mode); more watches are refused.
    pub max_subscriptions: usize,
}

impl RetrySchedule {
    /// The schedule the `[availability]` section configures.
    pub fn from_config(a: &crate::config::AvailabilityConfig) -> Self {
        RetrySchedule {
            initial_ms: a.retry_initial_ms,
            max_ms: a.retry_max_ms,
        }
    }
}

impl WatcherConfig {
    /// The watcher the `[availability]` section configures, with the node's identity `from`
    /// and its `contact` on the registrar's side; `None` when `reg_event = "off"` (or "list"
    /// without a registrar, which the config check already refuses).
    pub fn from_config(
        a: &crate::config::AvailabilityConfig,
        from: &str,
        contact: &str,
    ) -> Option<Self> {
        use crate::config::RegEventMode;
        let mode = match a.reg_event {
            RegEventMode::Off => return None,
            RegEventMode::PerUser => WatchMode::PerUser,
            RegEventMode::List => WatchMode::List(a.registrar.clone()?),
        };
        Some(WatcherConfig {
            subscribe: SubscribeConfig {
                from: from.to_string(),
                contact: contact.to_string(),
                expires_s: a.subscribe_expires_s,
                refresh_margin_s: a.refresh_margin_s,
                retry: RetrySchedule::from_config(a),
            },
            mode,
            max_subscriptions: a.max_subscriptions,
        })
    }
}

/// Why a watch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    #[error("{max} subscriptions already: no more AORs can be watched")]
    Full { max: usize },
    #[error("{0:?} is not a SIP, SIPS or tel URI")]
    NotAUri(String),
}

/// Every reg event subscription of the node, found by Call-ID.
pub struct RegEventWatcher {
    cfg: WatcherConfig,
    /// By target (the canonical AOR, or the list URI).
    subs: HashMap<String, RegEventSubscription>,
    /// Call-ID -> target.
    by_call_id: HashMap<Bytes, String>,
    rng: Rng,
}

impl RegEventWatcher {
    /// A watcher; in list mode its one subscription is due at `now`. `seed` drives the retry
    /// jitter (any value; a random one in production).
    pub fn new(cfg: WatcherConfig, seed: u64, ids: &mut impl IdSource, now: Millis) -> Self {
        let mut w = RegEventWatcher {
            cfg,
            subs: HashMap::new(),
            by_call_id: HashMap::new(),
            rng: Rng::new(seed),
        };
        if let WatchMode::List(uri) = w.cfg.mode.clone() {
            let sub = RegEventSubscription::new(&uri, ids, now, &w.cfg.subscribe);
            w.by_call_id.insert(sub.call_id.clone(), uri.clone());
            w.subs.insert(uri, sub);
        }
        w
    }

    /// Watch `user` (per-user mode; a no-op in list mode or when already watched): its first
    /// SUBSCRIBE is due at `now`. Returns whether a subscription was added.
    pub fn watch(
        &mut self,
        user: &str,
        ids: &mut impl IdSource,
        now: Millis,
    ) -> Result<bool, WatchError> {
        if matches!(self.cfg.mode, WatchMode::List(_)) {
            return Ok(false);
        }
        let uri = uri_of(user);
        if !["sip:", "sips:", "tel:"].iter().any(|s| {
            uri.get(..s.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(s))
        }) {
            return Err(WatchError::NotAUri(user.to_string()));
        }
        let key = aor(uri);
        if self.subs.contains_key(&key) {
            return Ok(false);
        }
        if self.subs.len() >= self.cfg.max_subscriptions {
            return Err(WatchError::Full {
                max: self.cfg.max_subscriptions,
            });
        }
        let sub = RegEventSubscription::new(&key, ids, now, &self.cfg.subscribe);
        self.by_call_id.insert(sub.call_id.clone(), key.clone());
        self.subs.insert(key, sub);
        Ok(true)
    }

    /// Stop watching `user` (per-user mode): the un-SUBSCRIBE to send, when a dialog exists.
    /// Its response, if any, matches nothing any more and is dropped.
    pub fn unwatch(&mut self, user: &str) -> Option<SipMessage> {
        let key = aor(uri_of(user));
        let mut sub = self.subs.remove(&key)?;
        self.by_call_id.remove(&sub.call_id);
        sub.unsubscribe(&self.cfg.subscribe)
    }

    /// How many subscriptions exist.
    pub fn len(&self) -> usize {
        self.subs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// The subscription for `target` (canonical AOR or the list URI).
    pub fn subscription(&self, target: &str) -> Option<&RegEventSubscription> {
        self.subs.get(target)
    }

    /// Whether `user` can be reached: `None` when no subscription has said.
    pub fn is_available(&self, user: &str) -> Option<bool> {
        let key = aor(uri_of(user));
        match &self.cfg.mode {
            WatchMode::PerUser => self.subs.get(&key)?.is_available(&key),
            WatchMode::List(uri) => self.subs.get(uri)?.is_available(&key),
        }
    }

    /// The earliest time [`handle_timeout`](Self::handle_timeout) has something to send.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.subs.values().filter_map(|s| s.poll_timeout()).min()
    }

    /// Every SUBSCRIBE due at `now`.
    pub fn handle_timeout(&mut self, now: Millis, ids: &mut impl IdSource) -> Vec<SipMessage> {
        let mut out = Vec::new();
        for (key, sub) in self.subs.iter_mut() {
            let old = sub.call_id.clone();
            if let Some(m) = sub.handle_timeout(now, &self.cfg.subscribe, ids) {
                out.push(m);
            }
            if sub.call_id != old {
                self.by_call_id.remove(&old);
                self.by_call_id.insert(sub.call_id.clone(), key.clone());
            }
        }
        out
    }

    fn by_message(&mut self, msg: &SipMessage) -> Option<&mut RegEventSubscription> {
        let call_id = msg.call_id()?;
        let key = self.by_call_id.get(call_id.as_bytes())?;
        self.subs.get_mut(key)
    }

    /// A response to a SUBSCRIBE. Returns whether it was one of ours (if not, the core goes
    /// on with its other routing).
    pub fn on_response(&mut self, resp: &SipMessage, now: Millis) -> bool {
        let cfg = self.cfg.subscribe.clone();
        let mut rng = self.rng.clone();
        let hit = match self.by_message(resp) {
            Some(sub) => sub.on_response(resp, now, &cfg, &mut rng),
            None => false,
        };
        self.rng = rng;
        hit
    }

    /// The SUBSCRIBE with this Call-ID got no final response (transaction timeout): as 408.
    pub fn on_request_timeout(&mut self, call_id: &str, now: Millis) -> bool {
        let cfg = self.cfg.subscribe.clone();
        let Some(key) = self.by_call_id.get(call_id.as_bytes()) else {
            return false;
        };
        let Some(sub) = self.subs.get_mut(key) else {
            return false;
        };
        sub.on_request_timeout(now, &cfg, &mut self.rng);
        true
    }

    /// Whether `request` is a NOTIFY this watcher should get (the core's dispatch test).
    pub fn owns(&self, request: &SipMessage) -> bool {
        request.method() == Some(&rsip::Method::Notify)
            && request
                .call_id()
                .is_some_and(|c| self.by_call_id.contains_key(c.as_bytes()))
    }

    /// A NOTIFY: the answer to give, and the availability changes it carried. A NOTIFY of no
    /// subscription of ours gets 481 (RFC 6665 §4.1.3).
    pub fn on_notify(&mut self, notify: &SipMessage, now: Millis) -> NotifyOutcome {
        let cfg = self.cfg.subscribe.clone();
        let mut rng = self.rng.clone();
        let out = match self.by_message(notify) {
            Some(sub) if sub.matches(notify) => sub.on_notify(notify, now, &cfg, &mut rng),
            _ => NotifyOutcome::answer(481, "Subscription Does Not Exist"),
        };
        self.rng = rng;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::sip::{Limits, parse_datagram};

    struct Counter(u32);
    impl IdSource for Counter {
        fn fresh_id(&mut self) -> Bytes {
            self.0 += 1;
            Bytes::from(format!("id{}", self.0))
        }
    }

    fn cfg() -> SubscribeConfig {
        SubscribeConfig {
            from: "sip:iwf@cpm.example.net".into(),
            contact: "sip:iwf@127.0.0.1:5060".into(),
            expires_s: 600,
            refresh_margin_s: 60,
            retry: RetrySchedule {
                initial_ms: 1_000,
                max_ms: 60_000,
            },
        }
    }

    fn watcher(mode: WatchMode) -> (RegEventWatcher, Counter) {
        let mut ids = Counter(0);
        let w = RegEventWatcher::new(
            WatcherConfig {
                subscribe: cfg(),
                mode,
                max_subscriptions: 2,
            },
            7,
            &mut ids,
            Millis(0),
        );
        (w, ids)
    }

    fn msg(text: &str) -> SipMessage {
        let text = text.replace('\n', "\r\n");
        parse_datagram(Bytes::from(text), &Limits::default()).unwrap()
    }

    /// The registrar's answer to `sub` with `code` and extra header lines.
    fn answer(sub: &SipMessage, code: u16, extra: &str) -> SipMessage {
        let mut r = sub.response_to(code, "X");
        if (200..300).contains(&code) {
            let to = format!("{};tag=reg1", sub.header("To").unwrap());
            r.set_header("To", &to).unwrap();
        }
        for line in extra.lines().filter(|l| !l.is_empty()) {
            let (n, v) = line.split_once(": ").unwrap();
            r.push_header(n, v).unwrap();
        }
        r
    }

    fn notify(sub: &SipMessage, cseq: u32, state: &str, body: &str) -> SipMessage {
        let tag = sub.from_tag().unwrap();
        let mut text = format!(
            "NOTIFY sip:iwf@127.0.0.1:5060 SIP/2.0\n\
             Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKn{cseq}\n\
             From: <sip:reg@example.com>;tag=reg1\n\
             To: <sip:iwf@cpm.example.net>;tag={tag}\n\
             Call-ID: {}\n\
             CSeq: {cseq} NOTIFY\n\
             Max-Forwards: 70\n\
             Contact: <sip:reg@127.0.0.1:5070>\n\
             Event: reg\n\
             Subscription-State: {state}\n",
            sub.call_id().unwrap()
        );
        if !body.is_empty() {
            text.push_str("Content-Type: application/reginfo+xml\n");
        }
        text.push_str(&format!("Content-Length: {}\n\n", body.len()));
        let text = text.replace('\n', "\r\n") + body;
        parse_datagram(Bytes::from(text), &Limits::default()).unwrap()
    }

    /// (AOR, registration state, [(contact id, contact state)]).
    type Reg<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

    fn doc(version: u64, state: &str, regs: &[Reg<'_>]) -> String {
        let mut s = format!(
            "<reginfo xmlns='urn:ietf:params:xml:ns:reginfo' version='{version}' state='{state}'>"
        );
        for (aor, rstate, contacts) in regs {
            s.push_str(&format!(
                "<registration aor='{aor}' id='r-{aor}' state='{rstate}'>"
            ));
            for (id, cstate) in *contacts {
                s.push_str(&format!(
                    "<contact id='{id}' state='{cstate}' event='registered'><uri>sip:{id}@10.0.0.1</uri></contact>"
                ));
            }
            s.push_str("</registration>");
        }
        s + "</reginfo>"
    }

    #[test]
    fn retry_schedule_doubles_caps_and_jitters() {
        let s = RetrySchedule {
            initial_ms: 1_000,
            max_ms: 10_000,
        };
        let none = Jitter(0);
        let full = Jitter(u16::MAX);
        assert_eq!(s.delay_ms(0, none), 500);
        assert_eq!(s.delay_ms(0, full), 1_000);
        assert_eq!(s.delay_ms(3, full), 8_000);
        assert_eq!(s.delay_ms(4, full), 10_000);
        assert_eq!(s.delay_ms(200, full), 10_000);
        assert_eq!(s.delay_ms(200, none), 5_000);
        assert_eq!(
            s.next_due(Millis(7), 1, Jitter(u16::MAX / 2)).0,
            7 + 1_000 + 499
        );
        let huge = RetrySchedule {
            initial_ms: u64::MAX / 3,
            max_ms: u64::MAX,
        };
        assert_eq!(huge.delay_ms(5, full), u64::MAX);
    }

    #[test]
    fn third_party_register_cases() {
        let reg = |extra: &str| {
            msg(&format!(
                "REGISTER sip:as.example.net SIP/2.0\n\
                 Via: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK1\n\
                 From: <sip:scscf.example.net>;tag=s1\n\
                 Call-ID: c1\nCSeq: 1 REGISTER\nMax-Forwards: 70\n{extra}Content-Length: 0\n\n"
            ))
        };
        let out = third_party_register(
            &reg(
                "To: <sip:Alice@Example.NET:5060>\nContact: <sip:scscf.example.net>\nExpires: 600000\n",
            ),
            true,
        );
        assert_eq!(out.status, 200);
        assert_eq!(
            out.event,
            Some(AvailabilityEvent::Registered {
                aor: "sip:Alice@example.net".into(),
                contacts: vec![]
            })
        );
        let r = out.response(&reg("To: <sip:a@b>\nExpires: 1\n"));
        assert_eq!(r.header("Expires"), Some("600000"));
        assert_eq!(r.status_code(), Some(200));

        let out = third_party_register(&reg("To: sip:a@b\nExpires: 0\n"), true);
        assert_eq!(
            out.event,
            Some(AvailabilityEvent::Unregistered {
                aor: "sip:a@b".into()
            })
        );
        // The Contact's expires parameter wins over the header (RFC 3261 §10.2.1.1).
        let out = third_party_register(
            &reg("To: <tel:+1555>\nContact: <sip:s>;expires=0\nExpires: 3600\n"),
            true,
        );
        assert_eq!(
            out.event,
            Some(AvailabilityEvent::Unregistered {
                aor: "tel:+1555".into()
            })
        );
        // Only the first Contact's parameters count; a quoted comma does not split.
        let out = third_party_register(
            &reg(
                "To: <sip:a@b>\nContact: <sip:s;x=1>;p=\"a,b\";expires=0, <sip:t>;expires=9\nExpires: 5\n",
            ),
            true,
        );
        assert_eq!(
            out.event,
            Some(AvailabilityEvent::Unregistered {
                aor: "sip:a@b".into()
            })
        );
        let out = third_party_register(&reg("To: <sip:a@b>\nContact: *\nExpires: 0\n"), true);
        assert_eq!(out.status, 200);
        for (extra, status) in [
            ("To: <sip:a@b>\n", 400),
            ("To: <mailto:a@b>\nExpires: 10\n", 400),
            ("To: <sip:a@b>\nExpires: soon\n", 400),
            ("To: <sip:a@b>\nContact: *\nExpires: 10\n", 400),
        ] {
            let out = third_party_register(&reg(extra), true);
            assert_eq!((out.status, out.event.is_none()), (status, true), "{extra}");
        }
        // The parser refuses a request without To; the check stands for messages built here.
        let mut no_to = reg("To: <sip:a@b>\nExpires: 1\n");
        no_to.remove_header("To");
        assert_eq!(third_party_register(&no_to, true).status, 400);
        assert_eq!(
            third_party_register(&reg("To: <sip:a@b>\nExpires: 1\n"), false).status,
            403
        );
    }

    #[test]
    fn subscribe_is_a_well_formed_rfc6665_request() {
        let (mut w, mut ids) = watcher(WatchMode::PerUser);
        assert_eq!(w.poll_timeout(), None);
        assert!(
            w.watch("<sip:Bob@Example.com>;tag=x", &mut ids, Millis(5))
                .unwrap()
        );
        assert!(!w.watch("sip:Bob@example.com", &mut ids, Millis(5)).unwrap());
        assert_eq!(w.poll_timeout(), Some(Millis(5)));
        assert!(w.handle_timeout(Millis(4), &mut ids).is_empty());
        let subs = w.handle_timeout(Millis(5), &mut ids);
        let [s] = &subs[..] else { panic!() };
        assert_eq!(s.method(), Some(&rsip::Method::Subscribe));
        assert_eq!(s.request_uri(), Some(&b"sip:Bob@example.com"[..]));
        assert_eq!(s.header("Event"), Some("reg"));
        assert_eq!(s.header("Accept"), Some("application/reginfo+xml"));
        assert_eq!(s.header("Expires"), Some("600"));
        assert_eq!(s.header("To"), Some("<sip:Bob@example.com>"));
        assert_eq!(s.cseq().unwrap().seq, 1);
        assert!(s.from_tag().is_some() && s.call_id().is_some());
        // Re-parses as a SIP message once the core adds its Via.
        let mut with_via = s.clone();
        with_via
            .insert_header(0, "Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKa")
            .unwrap();
        parse_datagram(with_via.serialize(), &Limits::default()).unwrap();
        // In flight: nothing more until the answer.
        assert_eq!(w.poll_timeout(), None);
        assert!(w.handle_timeout(Millis(1_000_000), &mut ids).is_empty());
        // Limits and bad input.
        assert!(w.watch("sip:c@d", &mut ids, Millis(5)).unwrap());
        assert_eq!(
            w.watch("sip:e@f", &mut ids, Millis(5)),
            Err(WatchError::Full { max: 2 })
        );
        assert!(matches!(
            w.watch("mailto:x@y", &mut ids, Millis(5)),
            Err(WatchError::NotAUri(_))
        ));
    }

    #[test]
    fn two_hundred_then_refresh_in_dialog_before_expiry() {
        let (mut w, mut ids) = watcher(WatchMode::PerUser);
        w.watch("sip:bob@example.com", &mut ids, Millis(0)).unwrap();
        let s1 = w.handle_timeout(Millis(0), &mut ids).remove(0);
        let ok = answer(
            &s1,
            200,
            "Expires: 300\nContact: <sip:reg@10.0.0.2:5070>\nRecord-Route: <sip:p1;lr>\nRecord-Route: <sip:p2;lr>",
        );
        // A stray response (wrong CSeq) is not taken.
        let mut stray = ok.clone();
        stray.set_header("CSeq", "9 SUBSCRIBE").unwrap();
        assert!(!w.on_response(&stray, Millis(10)));
        assert!(w.on_response(&ok, Millis(10)));
        let sub = w.subscription("sip:bob@example.com").unwrap();
        assert_eq!(sub.state(), SubState::Pending);
        // Granted 300 s (less than asked): refresh 60 s before expiry.
        assert_eq!(w.poll_timeout(), Some(Millis(10 + 240_000)));
        let s2 = w.handle_timeout(Millis(240_010), &mut ids).remove(0);
        assert_eq!(s2.call_id(), s1.call_id());
        assert_eq!(s2.from_tag(), s1.from_tag());
        assert_eq!(s2.to_tag(), Some("reg1"));
        assert_eq!(s2.cseq().unwrap().seq, 2);
        assert_eq!(s2.request_uri(), Some(&b"sip:reg@10.0.0.2:5070"[..]));
        let routes: Vec<&str> = s2.header_all("Route").collect();
        assert_eq!(routes, ["<sip:p2;lr>", "<sip:p1;lr>"]);
        // A short grant refreshes at half time.
        assert!(w.on_response(&answer(&s2, 200, "Expires: 60"), Millis(240_020)));
        assert_eq!(w.poll_timeout(), Some(Millis(240_020 + 30_000)));
    }

    #[test]
    fn four_twenty_three_retries_with_min_expires() {
        let (mut w, mut ids) = watcher(WatchMode::List("sip:registrar@example.com".into()));
        let s1 = w.handle_timeout(Millis(0), &mut ids).remove(0);
        assert_eq!(s1.request_uri(), Some(&b"sip:registrar@example.com"[..]));
        assert!(w.on_response(&answer(&s1, 423, "Min-Expires: 3600"), Millis(1)));
        let s2 = w.handle_timeout(Millis(1), &mut ids).remove(0);
        assert_eq!(s2.header("Expires"), Some("3600"));
        assert_eq!(s2.cseq().unwrap().seq, 2);
        assert_eq!(s2.call_id(), s1.call_id());
        // A 423 that asks for nothing more is a failure: backoff.
        assert!(w.on_response(&answer(&s2, 423, "Min-Expires: 10"), Millis(2)));
        let due = w.poll_timeout().unwrap();
        assert!(
            due >= Millis(2 + 500) && due <= Millis(2 + 1_000),
            "{due:?}"
        );
    }

    #[test]
    fn failures_back_off_with_a_new_dialog_and_honour_retry_after() {
        let (mut w, mut ids) = watcher(WatchMode::List("sip:registrar@example.com".into()));
        let s1 = w.handle_timeout(Millis(0), &mut ids).remove(0);
        assert!(w.on_response(&answer(&s1, 503, "Retry-After: 30"), Millis(0)));
        assert_eq!(w.poll_timeout(), Some(Millis(30_000)));
        let s2 = w.handle_timeout(Millis(30_000), &mut ids).remove(0);
        assert_ne!(s2.call_id(), s1.call_id());
        assert_eq!(s2.cseq().unwrap().seq, 1);
        // Transaction timeout: as 408, second failure: 1..2 s.
        assert!(w.on_request_timeout(s2.call_id().unwrap(), Millis(40_000)));
        let due = w.poll_timeout().unwrap();
        assert!(due >= Millis(41_000) && due <= Millis(42_000), "{due:?}");
        let s3 = w.handle_timeout(due, &mut ids).remove(0);
        // Success resets the failure count; a 481 to a refresh starts a new dialog at once-ish.
        assert!(w.on_response(&answer(&s3, 200, "Expires: 600"), due));
        let refresh_at = w.poll_timeout().unwrap();
        let s4 = w.handle_timeout(refresh_at, &mut ids).remove(0);
        assert_eq!(s4.call_id(), s3.call_id());
        assert!(w.on_response(&answer(&s4, 481, ""), refresh_at));
        let again = w.poll_timeout().unwrap();
        assert!(again <= refresh_at.after(1_000), "{again:?}");
        let s5 = w.handle_timeout(again, &mut ids).remove(0);
        assert_ne!(s5.call_id(), s4.call_id());
        assert!(!w.on_request_timeout("unknown", again));
    }

    #[test]
    fn notify_full_and_partial_state_with_version_ordering() {
        let (mut w, mut ids) = watcher(WatchMode::List("sip:registrar@example.com".into()));
        let s = w.handle_timeout(Millis(0), &mut ids).remove(0);
        // The first NOTIFY may come before the 2xx.
        let n0 = notify(
            &s,
            1,
            "active;expires=600",
            &doc(
                0,
                "full",
                &[
                    ("sip:a@x", "init", &[]),
                    ("sip:b@x", "active", &[("b1", "active")]),
                ],
            ),
        );
        assert!(w.owns(&n0));
        let out = w.on_notify(&n0, Millis(1));
        assert_eq!(out.status, 200);
        assert_eq!(out.events.len(), 2);
        assert_eq!(
            out.events[0],
            AvailabilityEvent::Unregistered {
                aor: "sip:a@x".into()
            }
        );
        let AvailabilityEvent::Registered { aor, contacts } = &out.events[1] else {
            panic!()
        };
        assert_eq!((aor.as_str(), contacts.len()), ("sip:b@x", 1));
        assert_eq!(w.is_available("sip:b@x"), Some(true));
        assert_eq!(w.is_available("sip:a@x"), Some(false));
        assert_eq!(w.is_available("sip:z@x"), None);
        assert!(w.on_response(&answer(&s, 200, "Expires: 600"), Millis(2)));
        assert_eq!(
            w.subscription("sip:registrar@example.com").unwrap().state(),
            SubState::Active
        );

        // Partial: a registers; b's only contact goes.
        let n1 = notify(
            &s,
            2,
            "active",
            &doc(
                1,
                "partial",
                &[
                    ("sip:A@X", "active", &[("a1", "active")]),
                    ("sip:b@x", "active", &[("b1", "terminated")]),
                ],
            ),
        );
        let out = w.on_notify(&n1, Millis(3));
        assert_eq!(
            out.events,
            vec![
                AvailabilityEvent::Registered {
                    aor: "sip:A@x".into(),
                    contacts: w.subscription("sip:registrar@example.com").unwrap().view["sip:A@x"]
                        .contacts
                        .clone()
                },
                AvailabilityEvent::Unregistered {
                    aor: "sip:b@x".into()
                },
            ]
        );
        // The same version again (a retransmission) or an older one: 200, nothing applied.
        assert_eq!(w.on_notify(&n1, Millis(4)).events, vec![]);
        let old = notify(&s, 3, "active", &doc(0, "full", &[]));
        let out = w.on_notify(&old, Millis(4));
        assert_eq!((out.status, out.events.len()), (200, 0));
        assert_eq!(w.is_available("sip:A@x"), Some(true));
        // A second contact for an available user changes nothing visible.
        let n2 = notify(
            &s,
            4,
            "active",
            &doc(2, "partial", &[("sip:A@x", "active", &[("a2", "active")])]),
        );
        assert_eq!(w.on_notify(&n2, Millis(5)).events, vec![]);
        // A gap (version 2 -> 4) in partial state: applied, and a refresh asks for full state.
        let before = w.poll_timeout().unwrap();
        let n4 = notify(
            &s,
            5,
            "active",
            &doc(4, "partial", &[("sip:A@x", "terminated", &[])]),
        );
        let out = w.on_notify(&n4, Millis(6));
        assert_eq!(
            out.events,
            vec![AvailabilityEvent::Unregistered {
                aor: "sip:A@x".into()
            }]
        );
        assert!(before > Millis(6));
        assert_eq!(w.poll_timeout(), Some(Millis(6)));
        let refresh = w.handle_timeout(Millis(6), &mut ids).remove(0);
        assert_eq!(refresh.call_id(), s.call_id());
        // Full state replaces everything: users not in it are gone.
        let n5 = notify(
            &s,
            6,
            "active",
            &doc(5, "full", &[("sip:b@x", "active", &[("b9", "active")])]),
        );
        let out = w.on_notify(&n5, Millis(7));
        assert_eq!(out.events.len(), 1);
        assert!(
            matches!(&out.events[0], AvailabilityEvent::Registered { aor, .. } if aor == "sip:b@x")
        );
        assert_eq!(w.is_available("sip:A@x"), None);
    }

    #[test]
    fn notify_refusals() {
        let (mut w, mut ids) = watcher(WatchMode::List("sip:registrar@example.com".into()));
        let s = w.handle_timeout(Millis(0), &mut ids).remove(0);
        // Unknown dialog: 481.
        let mut other = notify(&s, 1, "active", "");
        other.set_header("Call-ID", "nope").unwrap();
        assert!(!w.owns(&other));
        assert_eq!(w.on_notify(&other, Millis(1)).status, 481);
        let mut wrong_tag = notify(&s, 1, "active", "");
        wrong_tag
            .set_header("To", "<sip:iwf@cpm.example.net>;tag=zzz")
            .unwrap();
        assert_eq!(w.on_notify(&wrong_tag, Millis(1)).status, 481);
        // Bad body: 400; wrong type: 415; wrong event: 489; no Subscription-State: 400.
        let bad = notify(
            &s,
            1,
            "active",
            "<reginfo xmlns='urn:ietf:params:xml:ns:reginfo' state='full'/>",
        );
        assert_eq!(w.on_notify(&bad, Millis(1)).status, 400);
        let mut typ = notify(&s, 1, "active", "<x/>");
        typ.set_header("Content-Type", "application/pidf+xml")
            .unwrap();
        assert_eq!(w.on_notify(&typ, Millis(1)).status, 415);
        let mut ev = notify(&s, 1, "active", "");
        ev.set_header("Event", "presence").unwrap();
        assert_eq!(w.on_notify(&ev, Millis(1)).status, 489);
        let mut nostate = notify(&s, 1, "active", "");
        nostate.remove_header("Subscription-State");
        assert_eq!(w.on_notify(&nostate, Millis(1)).status, 400);
        // An empty pending NOTIFY is fine and establishes the dialog.
        let ok = notify(&s, 1, "pending", "");
        assert_eq!(w.on_notify(&ok, Millis(1)).status, 200);
        // Now only that notifier's tag matches.
        let mut forked = notify(&s, 2, "active", "");
        forked
            .set_header("From", "<sip:reg@example.com>;tag=other")
            .unwrap();
        assert_eq!(w.on_notify(&forked, Millis(1)).status, 481);
    }

    #[test]
    fn terminated_notify_resubscribes_by_reason() {
        let (mut w, mut ids) = watcher(WatchMode::List("sip:registrar@example.com".into()));
        let s = w.handle_timeout(Millis(0), &mut ids).remove(0);
        assert!(w.on_response(&answer(&s, 200, "Expires: 600"), Millis(0)));
        let out = w.on_notify(
            &notify(&s, 1, "terminated;reason=deactivated", ""),
            Millis(10),
        );
        assert_eq!(out.status, 200);
        assert_eq!(w.poll_timeout(), Some(Millis(10)));
        let s2 = w.handle_timeout(Millis(10), &mut ids).remove(0);
        assert_ne!(s2.call_id(), s.call_id());
        assert!(s2.to_tag().is_none());
        assert!(w.on_response(&answer(&s2, 200, "Expires: 600"), Millis(10)));
        w.on_notify(
            &notify(&s2, 1, "terminated;reason=probation;retry-after=120", ""),
            Millis(20),
        );
        assert_eq!(w.poll_timeout(), Some(Millis(20 + 120_000)));
        let s3 = w.handle_timeout(Millis(120_020), &mut ids).remove(0);
        assert!(w.on_response(&answer(&s3, 200, "Expires: 600"), Millis(120_020)));
        w.on_notify(
            &notify(&s3, 1, "terminated;reason=rejected", ""),
            Millis(120_030),
        );
        let due = w.poll_timeout().unwrap();
        assert!(
            due >= Millis(120_030 + 30_000),
            "rejected waits the longest backoff: {due:?}"
        );
    }

    #[test]
    fn remaining_transitions() {
        let list = || WatchMode::List("sip:registrar@example.com".into());
        let sub_state =
            |w: &RegEventWatcher| w.subscription("sip:registrar@example.com").unwrap().state();
        // Waiting -> Subscribing -> (NOTIFY pending) Pending -> (NOTIFY active) Active.
        let (mut w, mut ids) = watcher(list());
        assert_eq!(sub_state(&w), SubState::Waiting);
        let s = w.handle_timeout(Millis(0), &mut ids).remove(0);
        assert_eq!(sub_state(&w), SubState::Subscribing);
        assert_eq!(
            w.on_notify(&notify(&s, 1, "pending", ""), Millis(1)).status,
            200
        );
        assert_eq!(sub_state(&w), SubState::Pending);
        assert!(w.on_response(&answer(&s, 202, "Expires: 600"), Millis(2)));
        assert_eq!(sub_state(&w), SubState::Pending);
        assert_eq!(
            w.on_notify(&notify(&s, 2, "active", ""), Millis(3)).status,
            200
        );
        assert_eq!(sub_state(&w), SubState::Active);
        // A NOTIFY that shortens the subscription moves the refresh earlier.
        w.on_notify(&notify(&s, 3, "active;expires=100", ""), Millis(4));
        assert_eq!(w.poll_timeout(), Some(Millis(4 + 50_000)));
        // 423 to a refresh: asked again in the same dialog with Min-Expires.
        let r = w.handle_timeout(Millis(50_004), &mut ids).remove(0);
        assert!(w.on_response(&answer(&r, 423, "Min-Expires: 7200"), Millis(50_005)));
        let r2 = w.handle_timeout(Millis(50_005), &mut ids).remove(0);
        assert_eq!((r2.call_id(), r2.to_tag()), (s.call_id(), Some("reg1")));
        assert_eq!(r2.header("Expires"), Some("7200"));
        assert_eq!(sub_state(&w), SubState::Active);
        // A 2xx granting 0 s: over at once, retried after backoff.
        assert!(w.on_response(&answer(&r2, 200, "Expires: 0"), Millis(50_006)));
        assert_eq!(sub_state(&w), SubState::Terminated);
        assert!(w.poll_timeout().unwrap() >= Millis(50_006 + 500));

        // terminated;reason=timeout: at once; giveup: after retry-after; noresource: longest.
        for (reason, min_wait, max_wait) in [
            ("timeout", 0, 0),
            ("giveup;retry-after=7", 7_000, 7_000),
            ("noresource", 30_000, 60_000),
            ("invariant", 30_000, 60_000),
            ("some-extension", 500, 1_000),
        ] {
            let (mut w, mut ids) = watcher(list());
            let s = w.handle_timeout(Millis(0), &mut ids).remove(0);
            assert!(w.on_response(&answer(&s, 200, "Expires: 600"), Millis(0)));
            let state = format!("terminated;reason={reason}");
            assert_eq!(
                w.on_notify(&notify(&s, 1, &state, ""), Millis(100)).status,
                200
            );
            assert_eq!(sub_state(&w), SubState::Terminated, "{reason}");
            let due = w.poll_timeout().unwrap().0 - 100;
            assert!((min_wait..=max_wait).contains(&due), "{reason}: {due}");
        }
    }

    #[test]
    fn built_from_the_config() {
        use crate::config::{Config, RegEventMode};
        let mut a = Config::default().availability;
        assert!(WatcherConfig::from_config(&a, "sip:iwf@x", "sip:iwf@1.2.3.4").is_none());
        a.reg_event = RegEventMode::List;
        assert!(WatcherConfig::from_config(&a, "sip:iwf@x", "sip:iwf@1.2.3.4").is_none());
        a.registrar = Some("sip:reg@x".into());
        let w = WatcherConfig::from_config(&a, "sip:iwf@x", "sip:iwf@1.2.3.4").unwrap();
        assert_eq!(w.mode, WatchMode::List("sip:reg@x".into()));
        assert_eq!(w.subscribe.expires_s, 3_761);
        assert_eq!(w.subscribe.retry.initial_ms, 30_000);
        a.reg_event = RegEventMode::PerUser;
        let w = WatcherConfig::from_config(&a, "sip:iwf@x", "sip:iwf@1.2.3.4").unwrap();
        assert_eq!(w.mode, WatchMode::PerUser);
    }

    #[test]
    fn unwatch_sends_expires_zero_in_dialog() {
        let (mut w, mut ids) = watcher(WatchMode::PerUser);
        w.watch("sip:bob@example.com", &mut ids, Millis(0)).unwrap();
        let s = w.handle_timeout(Millis(0), &mut ids).remove(0);
        assert!(w.on_response(&answer(&s, 200, "Expires: 600"), Millis(0)));
        let un = w.unwatch("sip:bob@example.com").unwrap();
        assert_eq!(un.header("Expires"), Some("0"));
        assert_eq!(un.to_tag(), Some("reg1"));
        assert_eq!(un.cseq().unwrap().seq, 2);
        assert!(w.is_empty());
        assert!(!w.on_response(&answer(&un, 200, ""), Millis(1)));
        // Without a dialog there is nothing to end.
        w.watch("sip:c@d", &mut ids, Millis(0)).unwrap();
        assert!(w.unwatch("sip:c@d").is_none());
    }
}
