//! The relay's decisions, pure: what to answer, what to forward, what to remember of a
//! forwarded chunk, which REPORT a failure becomes. No sockets, no clock (the caller passes
//! `now`), unit-tested below.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::translate::state::Side;
use crate::wire::msrp::{
    ByteRange, Message, Method, MsrpError, MsrpUri, ReportRequest, StartLine, Status,
};
use crate::wire::{Answer, WireError};

use super::ChunkTranslator;

/// The comment the node writes after a status code (RFC 4975 §10).
pub fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        408 => "Request Timeout",
        413 => "Too Large",
        415 => "Unsupported Media Type",
        423 => "Interval Out-of-Bounds",
        481 => "No Such Session",
        501 => "Not Implemented",
        506 => "Wrong Session",
        _ => "Error",
    }
}

/// Whether a request with this Failure-Report gets a transaction response `code` (RFC 4975
/// §7.1.2: `no` gets none, `partial` only failures, `yes` (the default) all of them).
pub fn wants_response(failure_report: ReportRequest, code: u16) -> bool {
    match failure_report {
        ReportRequest::Yes => true,
        ReportRequest::Partial => code != 200,
        ReportRequest::No => false,
    }
}

/// Whether a failure `code` of a chunk the node forwarded becomes a REPORT to its sender
/// (RFC 4975 §7.1.2: a failure REPORT unless Failure-Report is `no`).
pub fn report_on_failure(failure_report: ReportRequest, code: u16) -> bool {
    code != 200 && failure_report != ReportRequest::No
}

/// The transaction response `code` to `req`, when its Failure-Report asks for one (RFC 4975
/// §7.2). REPORT requests are never answered (§7.1.2).
pub fn answer(req: &Message, code: u16) -> Option<Message> {
    if req.method() == Some(&Method::Report) {
        return None;
    }
    let fr = req.failure_report().unwrap_or(ReportRequest::Yes);
    if !wants_response(fr, code) {
        return None;
    }
    Message::response_to(req, code, Some(Bytes::from_static(reason(code).as_bytes()))).ok()
}

/// The status code a frame the codec rejected deserves (RFC 4975 §7.3, §10: 400 malformed,
/// 413 over our limits); `None`: nothing to answer (a response, which is never answered).
pub fn rejected_code(error: &MsrpError) -> Option<u16> {
    match error.answer() {
        Answer::Status(code) => Some(code),
        Answer::Drop => None,
    }
}

/// The response to a frame the codec rejected: its paths could not be read, so it goes to
/// the peer's first hop on this connection from the node's URI on this leg (RFC 4975 §7.2:
/// a response goes to the previous hop only).
pub fn rejected_response(
    transaction_id: Bytes,
    error: &MsrpError,
    peer_hop: &MsrpUri,
    local: &MsrpUri,
) -> Option<Message> {
    let code = rejected_code(error)?;
    let mut resp = Message {
        transaction_id,
        start: StartLine::Response {
            code,
            comment: Some(Bytes::from_static(reason(code).as_bytes())),
        },
        headers: Vec::with_capacity(2),
        body: None,
        continuation: crate::wire::msrp::Continuation::Complete,
    };
    resp.set_to_path(std::slice::from_ref(peer_hop));
    resp.set_from_path(std::slice::from_ref(local));
    Some(resp)
}

/// Whether a request whose To-Path ends in `to` is for the node's endpoint `local` (RFC 4975
/// §6.1 comparison; with `a=msrp-cema`, RFC 6714 §4.2, the session-id alone, because
/// middleboxes rewrite addresses).
pub fn addressed_to(local: &MsrpUri, to: &MsrpUri, cema: bool) -> bool {
    if cema {
        to.session_id.is_some() && to.session_id == local.session_id
    } else {
        local.equivalent(to)
    }
}

/// Whether a From-Path is the peer the SDP named: its last URI (the peer's own, RFC 4975
/// §5.4) against the last URI of the expected `a=path`, by RFC 4975 §6.1, or by session-id
/// with `a=msrp-cema` (RFC 6714 §4.2).
pub fn peer_matches(expected: &[MsrpUri], from_path: &[MsrpUri], cema: bool) -> bool {
    match (expected.last(), from_path.last()) {
        (Some(e), Some(f)) => addressed_to(e, f, cema),
        _ => false,
    }
}

/// The part of the message a chunk carries: its Byte-Range start, and its end computed from
/// the body actually carried (RFC 4975 §7.3.1 trusts the body), with the announced total.
pub fn chunk_range(msg: &Message) -> Option<ByteRange> {
    let r = msg.byte_range().ok().flatten().unwrap_or(ByteRange {
        start: 1,
        end: None,
        total: None,
    });
    let len = msg.body.as_ref().map_or(0, Bytes::len) as u64;
    Some(ByteRange {
        start: r.start,
        end: Some((r.start - 1).saturating_add(len)),
        total: r.total,
    })
}

/// The header fields of a chunk [`Message::report_for`] needs (RFC 4975 §7.1.2: its paths and
/// Message-ID), copied into one buffer of their own so that the chunk's read buffer is released
/// once it is forwarded (a chunk sent with `Failure-Report: partial` waits the transaction
/// timeout for an answer that never comes): one allocation per chunk, none when it has none of
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// To-Path, From-Path and Message-ID, one after the other.
    bytes: Bytes,
    /// Where each one ends in `bytes`, or `None` when the chunk had no such field.
    ends: [Option<u32>; 3],
}

/// The fields an [`Origin`] keeps, in its order.
const ORIGIN_FIELDS: [&str; 3] = ["To-Path", "From-Path", "Message-ID"];

impl Origin {
    /// The chunk as [`Message::report_for`] reads it: a bodiless SEND with the fields kept.
    pub fn message(&self) -> Message {
        let mut o = Message {
            transaction_id: Bytes::new(),
            start: StartLine::Request {
                method: Method::Send,
            },
            headers: Vec::with_capacity(3),
            body: None,
            continuation: crate::wire::msrp::Continuation::Complete,
        };
        let mut at = 0usize;
        for (name, end) in ORIGIN_FIELDS.iter().zip(self.ends) {
            if let Some(end) = end {
                let end = end as usize;
                o.set_header(*name, self.bytes.slice(at.min(end)..end));
                at = end;
            }
        }
        o
    }

    /// The chunk's Message-ID.
    pub fn message_id(&self) -> Option<&[u8]> {
        let [to, from, id] = self.ends;
        let end = id? as usize;
        let start = from.or(to).map_or(0, |e| e as usize);
        self.bytes.get(start..end)
    }
}

/// What [`Message::report_for`] needs of a chunk ([`Origin`]).
pub fn origin_of(msg: &Message) -> Origin {
    let values = ORIGIN_FIELDS.map(|name| msg.header(name));
    let total: usize = values.iter().flatten().map(|v| v.len()).sum();
    let mut ends = [None; 3];
    // Header fields are bounded by the codec's limits (far below 4 GiB); anything longer is
    // simply not kept.
    if u32::try_from(total).is_err() {
        return Origin {
            bytes: Bytes::new(),
            ends,
        };
    }
    let mut buf = Vec::with_capacity(total);
    for (end, v) in ends.iter_mut().zip(values) {
        if let Some(v) = v {
            buf.extend_from_slice(v);
            *end = u32::try_from(buf.len()).ok();
        }
    }
    Origin {
        bytes: Bytes::from(buf),
        ends,
    }
}

/// A request the node sent on a leg and whose response it waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Its transaction-id.
    pub transaction_id: Bytes,
    /// When it was queued.
    pub at: Instant,
    /// What it was.
    pub kind: PendingKind,
}

/// What a pending request was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingKind {
    /// The SEND an active leg opens with (RFC 4975 §5.4): a failure means the peer does not
    /// know the session.
    Bind,
    /// A chunk forwarded for the peer of the other leg.
    Chunk {
        /// The chunk as received ([`origin_of`]).
        origin: Origin,
        /// Its range ([`chunk_range`]).
        range: Option<ByteRange>,
        /// Its Failure-Report (`yes` or `partial`; `no` is never tracked).
        failure_report: ReportRequest,
    },
}

/// The requests a leg waits on, oldest first; bounded: when full the oldest is dropped (it
/// is treated as timed out).
///
/// With them, the SENDs already written to the peer whose 200 has not come yet ([`Self::hold`]):
/// if the connection drops before the 200, their bytes may never have been read (RFC 4975
/// §7.1.1: only the response says the peer has the chunk), so the leg's keeper
/// (`takeover`) keeps them ([`Self::take_held`]). Bounded by the caller (messages and
/// bytes, the oldest let go first); nothing is allocated while none is held.
#[derive(Debug)]
pub struct Outstanding {
    entries: VecDeque<Pending>,
    cap: usize,
    /// Written, unanswered SENDs, in the order written, with their encoded sizes.
    held: VecDeque<(Message, usize)>,
    /// The sum of `held`'s sizes.
    held_bytes: usize,
}

impl Outstanding {
    /// An empty table of at most `cap` entries.
    pub fn new(cap: usize) -> Self {
        Outstanding {
            entries: VecDeque::new(),
            cap: cap.max(1),
            held: VecDeque::new(),
            held_bytes: 0,
        }
    }

    /// A SEND `msg` of encoded size `len` is written to the peer: hold it until its response
    /// when a 200 is awaited for it (a tracked chunk whose Failure-Report is `yes`, RFC 4975
    /// §7.1.2; with `partial` or `no` no 200 ever says it arrived). Beyond `max` messages or
    /// `max_bytes` bytes the oldest held are let go (they are only tracked then, as before:
    /// a 408 REPORT if the peer never answers). Whether it is held.
    pub fn hold(&mut self, msg: Message, len: usize, max: usize, max_bytes: usize) -> bool {
        let awaited = self.entries.iter().rev().any(|p| {
            p.transaction_id == msg.transaction_id
                && matches!(
                    p.kind,
                    PendingKind::Chunk {
                        failure_report: ReportRequest::Yes,
                        ..
                    }
                )
        });
        // Answered already (the response overtook the writer), or no 200 to wait for.
        if !awaited || max == 0 || len > max_bytes {
            return false;
        }
        self.held.push_back((msg, len));
        self.held_bytes = self.held_bytes.saturating_add(len);
        while self.held.len() > max || self.held_bytes > max_bytes {
            match self.held.pop_front() {
                Some((_, n)) => self.held_bytes = self.held_bytes.saturating_sub(n),
                None => break,
            }
        }
        true
    }

    /// How many SENDs are held ([`Self::hold`]).
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Every held SEND with its pending entry, in the order written; both are removed (the
    /// leg dropped: the keeper answers for its peer now).
    pub fn take_held(&mut self) -> Vec<(Pending, Message)> {
        let held = std::mem::take(&mut self.held);
        self.held_bytes = 0;
        let mut out = Vec::with_capacity(held.len());
        for (msg, _) in held {
            if let Some(i) = self
                .entries
                .iter()
                .position(|p| p.transaction_id == msg.transaction_id)
                && let Some(p) = self.entries.remove(i)
            {
                out.push((p, msg));
            }
        }
        self.release_if_empty();
        out
    }

    /// Let go of the held SEND of a transaction that is answered or given up.
    fn unhold(&mut self, transaction_id: &[u8]) {
        if let Some(i) = self
            .held
            .iter()
            .position(|(m, _)| m.transaction_id == transaction_id)
            && let Some((_, n)) = self.held.remove(i)
        {
            self.held_bytes = self.held_bytes.saturating_sub(n);
        }
    }

    /// How many are waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is waiting.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Remember `p`; returns the entry dropped to make room, if any.
    pub fn insert(&mut self, p: Pending) -> Option<Pending> {
        let evicted = if self.entries.len() >= self.cap {
            self.entries.pop_front()
        } else {
            None
        };
        if let Some(e) = &evicted {
            self.unhold(&e.transaction_id);
        }
        self.entries.push_back(p);
        evicted
    }

    /// The entry for a response's transaction-id (responses mostly come in order: the
    /// search starts at the oldest).
    pub fn take(&mut self, transaction_id: &[u8]) -> Option<Pending> {
        let i = self
            .entries
            .iter()
            .position(|p| p.transaction_id == transaction_id)?;
        let p = self.entries.remove(i);
        self.unhold(transaction_id);
        self.release_if_empty();
        p
    }

    /// Nothing waits (nothing held): give the memory back (a held session keeps none; issue 9).
    fn release_if_empty(&mut self) {
        if self.entries.is_empty() && self.entries.capacity() > 0 {
            self.entries = VecDeque::new();
        }
        if self.held.is_empty() && self.held.capacity() > 0 {
            self.held = VecDeque::new();
            self.held_bytes = 0;
        }
    }

    /// Remove and return the entries queued before `now - timeout`.
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<Pending> {
        let mut out = Vec::new();
        while let Some(front) = self.entries.front() {
            if front.at + timeout > now {
                break;
            }
            if let Some(p) = self.entries.pop_front() {
                self.unhold(&p.transaction_id);
                out.push(p);
            }
        }
        self.release_if_empty();
        out
    }

    /// When the oldest entry times out.
    pub fn next_deadline(&self, timeout: Duration) -> Option<Instant> {
        self.entries.front().map(|p| p.at + timeout)
    }
}

/// What a response to a pending request leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseOutcome {
    /// Nothing more (a 200, or a failure nobody asked to hear about).
    Absorbed,
    /// Send this REPORT to the peer of the other leg.
    Report(Message),
    /// The peer refused the binding SEND: the leg is not usable.
    BindRefused(u16),
}

/// Decide what a response `code` (or a timeout, 408, RFC 4975 §7.1.1) to `pending` leads to;
/// `report_tid` is the transaction-id a REPORT would carry.
pub fn on_response(
    pending: &Pending,
    code: u16,
    comment: Option<Bytes>,
    report_tid: impl FnOnce() -> Bytes,
) -> ResponseOutcome {
    match &pending.kind {
        PendingKind::Bind if code == 200 => ResponseOutcome::Absorbed,
        PendingKind::Bind => ResponseOutcome::BindRefused(code),
        PendingKind::Chunk {
            origin,
            range,
            failure_report,
        } => {
            if !report_on_failure(*failure_report, code) {
                return ResponseOutcome::Absorbed;
            }
            let status = Status {
                namespace: 0,
                code,
                comment: comment.or_else(|| Some(Bytes::from_static(reason(code).as_bytes()))),
            };
            match Message::report_for(&origin.message(), report_tid(), &status, *range) {
                Ok(r) => ResponseOutcome::Report(r),
                Err(_) => ResponseOutcome::Absorbed,
            }
        }
    }
}

/// Decide what a request that got no response in time leads to: 408 (RFC 4975 §7.1.1), except
/// for a chunk sent with `Failure-Report: partial`, whose peer answers only failures (§7.1.2),
/// so that silence is its success.
pub fn on_timeout(pending: &Pending, report_tid: impl FnOnce() -> Bytes) -> ResponseOutcome {
    match &pending.kind {
        PendingKind::Chunk {
            failure_report: ReportRequest::Partial,
            ..
        } => ResponseOutcome::Absorbed,
        _ => on_response(pending, 408, None, report_tid),
    }
}

/// What to do with a request received on a leg.
// Short-lived, moved once: boxing `Forward` would cost an allocation per chunk.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum RequestAction {
    /// Nothing (a REPORT nobody could route, a request that wants no response).
    Ignore,
    /// Answer on this leg and forward nothing.
    Answer(Message),
    /// Queue `out` to the other leg; once queued, answer `ok` on this leg (RFC 4975 §7.2:
    /// the node has accepted the chunk) and remember `track` on the other leg.
    Forward {
        /// The translated request.
        out: Message,
        /// The 200 to this leg's peer, if it wants one.
        ok: Option<Message>,
        /// What to remember until the other leg's peer answers.
        track: Option<PendingKind>,
    },
}

/// Decide what a request from the peer of leg `side` (the node's URI there: `local`) becomes.
pub fn on_request(
    side: Side,
    local: &MsrpUri,
    cema: bool,
    msg: &Message,
    translator: &dyn ChunkTranslator,
) -> RequestAction {
    let or_ignore = |m: Option<Message>| m.map_or(RequestAction::Ignore, RequestAction::Answer);
    // RFC 4975 §7.3: a request for another session gets 481.
    // The last URI that parses (the codec has checked them all).
    let (mut to, mut whole) = (None, true);
    for u in msg.to_path_uris() {
        match u {
            Ok(u) => to = Some(u),
            Err(_) => whole = false,
        }
    }
    let Some(to) = to.filter(|to| addressed_to(local, to, cema)) else {
        return or_ignore(answer(msg, 481));
    };
    // The translator is told the session-id rather than reading the To-Path again; one that
    // does not parse whole it reads itself, as before (and refuses).
    let session_id = if whole { to.session_id.as_ref() } else { None };
    match msg.method() {
        Some(Method::Send) => {
            let fr = msg.failure_report().unwrap_or(ReportRequest::Yes);
            if msg.check_byte_range().is_err() {
                return or_ignore(answer(msg, 400));
            }
            // A bodiless SEND that starts no message binds the connection or keeps it alive
            // (RFC 4975 §5.4, §7.1.1): accepted, nothing to deliver.
            let starts_empty = msg.byte_range().ok().flatten().is_none_or(|r| r.start == 1);
            if msg.body.is_none() && starts_empty {
                return or_ignore(answer(msg, 200));
            }
            match translator.send_to(side, session_id, msg) {
                Ok(out) => RequestAction::Forward {
                    ok: answer(msg, 200),
                    track: (fr != ReportRequest::No).then(|| PendingKind::Chunk {
                        origin: origin_of(msg),
                        range: chunk_range(msg),
                        failure_report: fr,
                    }),
                    out,
                },
                Err((code, _)) => or_ignore(answer(msg, code)),
            }
        }
        // A REPORT is never answered (RFC 4975 §7.1.2); one the translator cannot place is
        // dropped.
        Some(Method::Report) => match translator.report_to(side, session_id, msg) {
            Some(out) => RequestAction::Forward {
                out,
                ok: None,
                track: None,
            },
            None => RequestAction::Ignore,
        },
        // RFC 4975 §7.3 / §12: a method the endpoint does not understand gets 501 (AUTH is
        // for relays, RFC 4976, and the node is an endpoint).
        _ => or_ignore(answer(msg, 501)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::msrp::{Limits, parse};

    fn msrp(text: &str) -> Message {
        parse(Bytes::from(text.replace('\n', "\r\n")), &Limits::default()).expect("valid MSRP")
    }

    fn uri(s: &str) -> MsrpUri {
        MsrpUri::parse_str(s).expect("uri")
    }

    const LOCAL: &str = "msrp://127.0.0.1:2855/gwcpm;tcp";

    fn send(extra: &str, body: Option<&str>) -> Message {
        let body = body.map_or(String::new(), |b| {
            format!("Content-Type: text/plain\n\n{b}\n")
        });
        msrp(&format!(
            "MSRP t100 SEND
To-Path: msrp://127.0.0.1:2855/gwcpm;tcp
From-Path: msrp://192.0.2.10:7777/alice1;tcp
Message-ID: m0001
{extra}{body}-------t100$
"
        ))
    }

    /// A translator that rewrites nothing but the transaction-id, or refuses with a code.
    struct Echo(Option<u16>);
    impl ChunkTranslator for Echo {
        fn send(&self, _: Side, msg: &Message) -> Result<Message, (u16, &'static str)> {
            match self.0 {
                Some(c) => Err((c, "refused")),
                None => {
                    let mut m = msg.clone();
                    m.transaction_id = Bytes::from_static(b"out1");
                    Ok(m)
                }
            }
        }
        fn report(&self, _: Side, msg: &Message) -> Option<Message> {
            Some(msg.clone())
        }
    }

    fn code(m: &Message) -> Option<u16> {
        m.response_code()
    }

    #[test]
    fn failure_report_decides_responses_and_reports() {
        use ReportRequest::*;
        assert!(wants_response(Yes, 200) && wants_response(Yes, 481));
        assert!(!wants_response(Partial, 200) && wants_response(Partial, 413));
        assert!(!wants_response(No, 200) && !wants_response(No, 400));
        assert!(report_on_failure(Yes, 408) && report_on_failure(Partial, 481));
        assert!(!report_on_failure(Yes, 200) && !report_on_failure(No, 481));
        assert_eq!(answer(&send("Failure-Report: no\n", Some("x")), 400), None);
        let partial = send("Failure-Report: partial\n", Some("x"));
        assert_eq!(answer(&partial, 200), None);
        assert_eq!(answer(&partial, 400).as_ref().and_then(code), Some(400));
    }

    #[test]
    fn a_response_goes_to_the_previous_hop_from_the_local_uri() {
        let ok = answer(&send("", Some("hi")), 200).expect("200");
        assert_eq!(&ok.transaction_id[..], b"t100");
        assert_eq!(
            ok.to_path().expect("to")[0],
            uri("msrp://192.0.2.10:7777/alice1;tcp")
        );
        assert_eq!(ok.from_path().expect("from")[0], uri(LOCAL));
    }

    #[test]
    fn rejected_frames_get_400_or_413_and_responses_nothing() {
        let hop = uri("msrp://192.0.2.10:7777/alice1;tcp");
        let local = uri(LOCAL);
        let bad = MsrpError::MissingHeader {
            name: "To-Path",
            offset: 0,
        };
        let r = rejected_response(Bytes::from_static(b"t9x1"), &bad, &hop, &local).expect("400");
        assert_eq!(code(&r), Some(400));
        assert_eq!(r.to_path().expect("to"), vec![hop.clone()]);
        let big = MsrpError::ChunkTooLarge {
            size: 9,
            limit: 1,
            offset: 0,
        };
        assert_eq!(rejected_code(&big), Some(413));
        let in_resp = MsrpError::InResponse {
            code: 200,
            source: Box::new(bad),
        };
        assert_eq!(
            rejected_response(Bytes::new(), &in_resp, &hop, &local),
            None
        );
    }

    #[test]
    fn session_matching_follows_uri_comparison_or_cema() {
        let local = uri(LOCAL);
        assert!(addressed_to(
            &local,
            &uri("MSRP://127.0.0.1:2855/gwcpm;TCP"),
            false
        ));
        assert!(!addressed_to(
            &local,
            &uri("msrp://127.0.0.1:2855/GWCPM;tcp"),
            false
        ));
        assert!(!addressed_to(
            &local,
            &uri("msrp://10.0.0.1:2855/gwcpm;tcp"),
            false
        ));
        assert!(addressed_to(
            &local,
            &uri("msrp://10.0.0.1:9/gwcpm;tcp"),
            true
        ));
        let expected = vec![
            uri("msrp://relay.example.net:2855/r1;tcp"),
            uri("msrp://192.0.2.10:7777/alice1;tcp"),
        ];
        let seen = vec![uri("msrp://192.0.2.10:7777/alice1;tcp")];
        assert!(peer_matches(&expected, &seen, false));
        let natted = vec![uri("msrp://198.51.100.1:4000/alice1;tcp")];
        assert!(!peer_matches(&expected, &natted, false));
        assert!(peer_matches(&expected, &natted, true));
        assert!(!peer_matches(&expected, &[], true));
    }

    #[test]
    fn a_chunk_is_forwarded_then_answered_and_tracked() {
        let msg = send("Byte-Range: 1-2/2\n", Some("hi"));
        let local = uri(LOCAL);
        match on_request(Side::Cpm, &local, false, &msg, &Echo(None)) {
            RequestAction::Forward { out, ok, track } => {
                assert_eq!(&out.transaction_id[..], b"out1");
                assert_eq!(ok.as_ref().and_then(code), Some(200));
                match track {
                    Some(PendingKind::Chunk { range, origin, .. }) => {
                        assert_eq!(
                            range,
                            Some(ByteRange {
                                start: 1,
                                end: Some(2),
                                total: Some(2)
                            })
                        );
                        assert_eq!(origin.message_id(), msg.message_id().map(|v| &v[..]));
                        let o = origin.message();
                        assert_eq!(o.body, None);
                        assert_eq!(o.header("To-Path"), msg.header("To-Path"));
                        assert_eq!(o.header("From-Path"), msg.header("From-Path"));
                        assert_eq!(o.message_id(), msg.message_id());
                    }
                    other => panic!("not tracked: {other:?}"),
                }
            }
            other => panic!("not forwarded: {other:?}"),
        }
        let quiet = send("Failure-Report: no\n", Some("hi"));
        match on_request(Side::Cpm, &local, false, &quiet, &Echo(None)) {
            RequestAction::Forward { ok, track, .. } => assert!(ok.is_none() && track.is_none()),
            other => panic!("not forwarded: {other:?}"),
        }
    }

    #[test]
    fn requests_that_are_not_relayed_get_their_answer() {
        let local = uri(LOCAL);
        let answered = |m: &Message, t: &dyn ChunkTranslator| match on_request(
            Side::Simple,
            &local,
            false,
            m,
            t,
        ) {
            RequestAction::Answer(a) => code(&a),
            RequestAction::Ignore => None,
            RequestAction::Forward { .. } => Some(0),
        };
        // Binding SEND: 200, nothing forwarded.
        assert_eq!(answered(&send("", None), &Echo(None)), Some(200));
        // The translator's refusal.
        assert_eq!(answered(&send("", Some("x")), &Echo(Some(415))), Some(415));
        // Byte-Range against the body.
        assert_eq!(
            answered(&send("Byte-Range: 1-5/5\n", Some("x")), &Echo(None)),
            Some(400)
        );
        // Another session.
        let other = msrp(
            "MSRP t101 SEND
To-Path: msrp://127.0.0.1:2855/other;tcp
From-Path: msrp://192.0.2.10:7777/alice1;tcp
Message-ID: m0002
-------t101$
",
        );
        assert_eq!(answered(&other, &Echo(None)), Some(481));
        let auth = msrp(
            "MSRP t102 AUTH
To-Path: msrp://127.0.0.1:2855/gwcpm;tcp
From-Path: msrp://192.0.2.10:7777/alice1;tcp
-------t102$
",
        );
        assert_eq!(answered(&auth, &Echo(None)), Some(501));
        // A last, bodiless chunk still ends a message: forwarded.
        assert_eq!(
            answered(&send("Byte-Range: 6-5/5\n", None), &Echo(None)),
            Some(0)
        );
    }

    #[test]
    fn a_report_is_forwarded_unanswered() {
        let rep = msrp(
            "MSRP r100 REPORT
To-Path: msrp://127.0.0.1:2855/gwcpm;tcp
From-Path: msrp://192.0.2.10:7777/alice1;tcp
Message-ID: m0001
Byte-Range: 1-2/2
Status: 000 200 OK
-------r100$
",
        );
        match on_request(Side::Cpm, &uri(LOCAL), false, &rep, &Echo(None)) {
            RequestAction::Forward { ok, track, .. } => assert!(ok.is_none() && track.is_none()),
            other => panic!("{other:?}"),
        }
    }

    fn pending(tid: &'static str, at: Instant, fr: ReportRequest) -> Pending {
        let msg = send("Byte-Range: 1-2/2\n", Some("hi"));
        Pending {
            transaction_id: Bytes::from_static(tid.as_bytes()),
            at,
            kind: PendingKind::Chunk {
                origin: origin_of(&msg),
                range: chunk_range(&msg),
                failure_report: fr,
            },
        }
    }

    #[test]
    fn an_origin_keeps_the_paths_and_message_id_in_one_buffer() {
        let msg = send("Byte-Range: 1-2/2\n", Some("hi"));
        let o = origin_of(&msg);
        assert_eq!(o.message_id(), Some(&b"m0001"[..]));
        let m = o.message();
        for name in ["To-Path", "From-Path", "Message-ID"] {
            assert_eq!(m.header(name), msg.header(name), "{name}");
        }
        assert_eq!(m.headers.len(), 3);
        assert_eq!(m.body, None);
        // Without a Message-ID (RFC 4975 §7.1.1: a bodiless SEND may have none).
        let mut bare = msg.clone();
        bare.remove_header("Message-ID");
        let o = origin_of(&bare);
        assert_eq!(o.message_id(), None);
        assert_eq!(o.message().headers.len(), 2);
        assert_eq!(o.message().header("From-Path"), msg.header("From-Path"));
        let r = Message::report_for(
            &origin_of(&msg).message(),
            Bytes::from_static(b"rep1"),
            &Status {
                namespace: 0,
                code: 408,
                comment: None,
            },
            None,
        )
        .expect("report");
        assert_eq!(r.message_id(), msg.message_id());
    }

    #[test]
    fn an_error_response_becomes_a_report_with_status_and_range() {
        let p = pending("out1", Instant::now(), ReportRequest::Yes);
        assert_eq!(
            on_response(&p, 200, None, || Bytes::from_static(b"rep1")),
            ResponseOutcome::Absorbed
        );
        let ResponseOutcome::Report(r) = on_response(&p, 481, None, || Bytes::from_static(b"rep1"))
        else {
            panic!("no report");
        };
        assert_eq!(r.method(), Some(&Method::Report));
        assert_eq!(r.status().expect("status").map(|s| s.code), Some(481));
        assert_eq!(r.header("Byte-Range").map(|v| &v[..]), Some(&b"1-2/2"[..]));
        assert_eq!(r.message_id().map(|v| &v[..]), Some(&b"m0001"[..]));
        assert_eq!(
            r.to_path().expect("to")[0],
            uri("msrp://192.0.2.10:7777/alice1;tcp")
        );
        assert_eq!(r.from_path().expect("from")[0], uri(LOCAL));
        let bind = Pending {
            transaction_id: Bytes::from_static(b"bind"),
            at: Instant::now(),
            kind: PendingKind::Bind,
        };
        assert_eq!(
            on_response(&bind, 481, None, Bytes::new),
            ResponseOutcome::BindRefused(481)
        );
    }

    #[test]
    fn silence_is_408_unless_only_failures_are_answered() {
        let yes = pending("out1", Instant::now(), ReportRequest::Yes);
        let ResponseOutcome::Report(r) = on_timeout(&yes, || Bytes::from_static(b"rep1")) else {
            panic!("no report");
        };
        assert_eq!(r.status().expect("status").map(|s| s.code), Some(408));
        let partial = pending("out2", Instant::now(), ReportRequest::Partial);
        assert_eq!(
            on_timeout(&partial, || Bytes::from_static(b"rep2")),
            ResponseOutcome::Absorbed
        );
        let ResponseOutcome::Report(r) =
            on_response(&partial, 413, None, || Bytes::from_static(b"rep3"))
        else {
            panic!("a partial failure is reported");
        };
        assert_eq!(r.status().expect("status").map(|s| s.code), Some(413));
    }

    #[test]
    fn outstanding_is_bounded_and_expires_in_order() {
        let t0 = Instant::now();
        let mut o = Outstanding::new(2);
        assert!(o.insert(pending("a001", t0, ReportRequest::Yes)).is_none());
        let t1 = t0 + Duration::from_secs(1);
        assert!(o.insert(pending("b001", t1, ReportRequest::Yes)).is_none());
        let evicted = o.insert(pending("c001", t1, ReportRequest::Yes));
        assert_eq!(
            evicted.map(|p| p.transaction_id),
            Some(Bytes::from_static(b"a001"))
        );
        assert_eq!(o.len(), 2);
        assert!(o.take(b"c001").is_some());
        assert!(o.take(b"c001").is_none());
        let timeout = Duration::from_secs(30);
        assert_eq!(o.next_deadline(timeout), Some(t1 + timeout));
        assert!(o.expire(t1 + Duration::from_secs(29), timeout).is_empty());
        assert_eq!(o.expire(t1 + timeout, timeout).len(), 1);
        assert!(o.is_empty());
    }

    /// A written SEND is held until its response, bounded, and handed over in write order on a
    /// drop with its pending entry (gap 1 of issue 7: written but never answered).
    #[test]
    fn written_sends_are_held_until_answered_bounded() {
        let t0 = Instant::now();
        let written = |tid: &'static str| {
            let mut m = send("Byte-Range: 1-2/2\n", Some("hi"));
            m.transaction_id = Bytes::from_static(tid.as_bytes());
            m
        };
        let mut o = Outstanding::new(8);
        for tid in ["a001", "b001", "c001", "d001"] {
            assert!(o.insert(pending(tid, t0, ReportRequest::Yes)).is_none());
        }
        assert!(
            o.insert(pending("p001", t0, ReportRequest::Partial))
                .is_none()
        );
        // Answered before the writer got to it, or no 200 awaited: not held.
        assert!(o.take(b"a001").is_some());
        assert!(!o.hold(written("a001"), 10, 4, 100));
        assert!(!o.hold(written("p001"), 10, 4, 100));
        assert!(!o.hold(written("x001"), 10, 4, 100));
        assert!(o.hold(written("b001"), 10, 4, 100));
        assert!(o.hold(written("c001"), 10, 4, 100));
        assert!(o.hold(written("d001"), 10, 4, 100));
        assert_eq!(o.held(), 3);
        // Its 200: let go.
        assert!(o.take(b"c001").is_some());
        assert_eq!(o.held(), 2);
        // Over the byte bound: the oldest is let go (still tracked).
        assert!(o.insert(pending("e001", t0, ReportRequest::Yes)).is_none());
        assert!(o.hold(written("e001"), 85, 4, 100));
        assert_eq!(o.held(), 2);
        let taken: Vec<Bytes> = o
            .take_held()
            .into_iter()
            .map(|(p, m)| {
                assert_eq!(p.transaction_id, m.transaction_id);
                p.transaction_id
            })
            .collect();
        assert_eq!(
            taken,
            [Bytes::from_static(b"d001"), Bytes::from_static(b"e001")]
        );
        assert_eq!(o.held(), 0);
        // b001 was let go, not answered: still pending (a 408 at the timeout); p001 too.
        assert_eq!(o.len(), 2);
        assert!(o.take(b"b001").is_some());
        // A timed-out entry lets its held SEND go.
        assert!(o.insert(pending("f001", t0, ReportRequest::Yes)).is_none());
        assert!(o.hold(written("f001"), 10, 4, 100));
        let timeout = Duration::from_secs(30);
        assert_eq!(o.expire(t0 + timeout, timeout).len(), 2);
        assert_eq!(o.held(), 0);
        assert!(o.is_empty());
    }
}
