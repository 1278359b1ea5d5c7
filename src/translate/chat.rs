//! MSRP inside a chat session: a SEND chunk or a REPORT received on one leg becomes the
//! gateway's own request on the other leg (the gateway is the MSRP endpoint of each leg,
//! ARCHITECTURE.md "back-to-back MSRP relay").
//!
//! What changes: the transaction-id (per hop, RFC 4975 §7.3), To-Path and From-Path (the other
//! leg's peer and the gateway, §7.1); what is kept: Message-ID (the relay keeps one message one
//! message on both legs, so chunks, REPORTs and IMDNs still match, §7.1.1), Byte-Range, the
//! report requests, the content headers and the body, byte for byte and chunk by chunk, unless
//! the target side wants isComposing carried otherwise (mappings, RFC 3994 §3.3); a message that
//! asks for notifications is remembered by its imdn.Message-ID with the device that sent it,
//! so that an IMDN sent after the session has ended still finds it (CPM 2.0 SD 5.2.1.1).

use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};

use super::addr::{aor, uri_of};
use super::device::device_of;
use super::leg::{MAX_ID_LEN, lossy};
use super::session::Addresses;
use super::state::{Change, ConversationIds, Device, DialogKey, Entry, MessageOrigin, Side, View};
use super::{Env, TranslateError};
use crate::mapping::{Carriage, Mappings};
use crate::time::Millis;
use crate::wire::cpim::{Cpim, CpimHeader};
use crate::wire::iscomposing;
use crate::wire::msrp::{Continuation, Header, Message, Method, MsrpUri, write_uri_list};
use crate::wire::text::media_type_is;

/// One leg of a session as the gateway writes to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLeg {
    /// The gateway's MSRP URI on this leg (From-Path of what it sends here).
    pub local: MsrpUri,
    /// The peer's `a=path` (To-Path of what the gateway sends here), first hop first.
    pub remote_path: Vec<MsrpUri>,
}

/// Who speaks in the session, for what is remembered of messages that ask for notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatParties {
    /// The device at the far end of the leg the chunk came from.
    pub sender: Device,
    /// The address of record of the user on the other leg.
    pub recipient: Bytes,
    /// The session's CPM conversation identities.
    pub conversation: Option<ConversationIds>,
}

/// The chunk to send on the other leg, and what to remember.
#[derive(Debug)]
pub struct ChatOutcome {
    /// The gateway's request on the other leg.
    pub send: Message,
    /// Table changes.
    pub changes: Vec<Change>,
}

/// A transaction-id for the gateway's own request: 32 characters of a fresh identity with its
/// hyphens removed (RFC 4975 §9: `transact-id = ident`, 4 to 32 characters).
fn transaction_id(env: &mut Env<'_>) -> Bytes {
    let id = env.ids.fresh_id();
    let mut tid = Tid {
        bytes: [0; 32],
        len: 0,
    };
    let alphanumeric = id.iter().copied().filter(u8::is_ascii_alphanumeric);
    for (slot, b) in tid.bytes.iter_mut().zip(alphanumeric) {
        *slot = b;
        tid.len += 1;
    }
    // One allocation, and clones (the pending entry, the held SEND) only count references: a
    // `Bytes` from a `Vec` allocates again on its first clone.
    Bytes::from_owner(tid)
}

/// A transaction-id's characters, owned by the `Bytes` that carries them.
struct Tid {
    bytes: [u8; 32],
    len: usize,
}

impl AsRef<[u8]> for Tid {
    fn as_ref(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

/// A URI list as a header field value (RFC 4975 §9: one space between URIs), sized exactly so
/// that it is frozen without reallocating.
fn path_value(uris: &[MsrpUri]) -> Bytes {
    let len = uris.iter().map(MsrpUri::encoded_len).sum::<usize>() + uris.len().saturating_sub(1);
    let mut v = BytesMut::with_capacity(len);
    write_uri_list(&mut v, uris);
    v.freeze()
}

/// The To-Path and From-Path values of what the gateway sends on `out`.
fn paths_of(out: &ChatLeg) -> Paths {
    Paths {
        to: path_value(&out.remote_path),
        from: path_value(std::slice::from_ref(&out.local)),
    }
}

/// The To-Path and From-Path values of what the gateway sends on a leg, encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Paths {
    to: Bytes,
    from: Bytes,
}

/// The request the gateway sends on `out` for `msg`: same method, fields and body, the gateway's
/// transaction-id and paths.
fn relay(msg: &Message, method: Method, out: &ChatLeg, env: &mut Env<'_>) -> Message {
    relay_on(msg, method, &paths_of(out), env)
}

/// [`relay`] with the leg's paths already encoded.
fn relay_on(msg: &Message, method: Method, paths: &Paths, env: &mut Env<'_>) -> Message {
    let mut next = Message::request(transaction_id(env), method);
    next.headers.reserve(msg.headers.len() + 2);
    next.headers.push(Header {
        name: Bytes::from_static(b"To-Path"),
        value: paths.to.clone(),
    });
    next.headers.push(Header {
        name: Bytes::from_static(b"From-Path"),
        value: paths.from.clone(),
    });
    for h in &msg.headers {
        if !h.name.eq_ignore_ascii_case(b"To-Path") && !h.name.eq_ignore_ascii_case(b"From-Path") {
            next.headers.push(h.clone());
        }
    }
    next.body = msg.body.clone();
    next.continuation = msg.continuation;
    next
}

fn media_is(content_type: Option<&Bytes>, media: &str) -> bool {
    content_type.is_some_and(|ct| media_type_is(ct, media))
}

/// Whether translating `msg` reads [`Env::datetime`] (only a bare isComposing wrapped in CPIM
/// gets a DateTime): otherwise the caller may leave it empty, and not format the time for
/// every chunk.
pub fn reads_datetime(msg: &Message) -> bool {
    media_is(msg.content_type(), iscomposing::CONTENT_TYPE)
}

/// Whether `msg` is a whole message in one chunk: `$` and a Byte-Range from byte 1 to the end
/// (or none, which RFC 4975 §7.1.1 reads as the whole message).
fn whole(msg: &Message) -> Result<bool, TranslateError> {
    if msg.continuation != Continuation::Complete {
        return Ok(false);
    }
    Ok(match msg.byte_range()? {
        None => true,
        Some(r) => r.start == 1,
    })
}

/// Translate a SEND received from `from`'s leg for the other leg `out`.
pub fn chat_send(
    msg: &Message,
    from: Side,
    out: &ChatLeg,
    parties: &ChatParties,
    mappings: &Mappings,
    env: &mut Env<'_>,
) -> Result<ChatOutcome, TranslateError> {
    send_on(msg, from, &paths_of(out), parties, mappings, env)
}

/// [`chat_send`] with the other leg's paths already encoded.
fn send_on(
    msg: &Message,
    from: Side,
    paths: &Paths,
    parties: &ChatParties,
    mappings: &Mappings,
    env: &mut Env<'_>,
) -> Result<ChatOutcome, TranslateError> {
    let target = match from.other() {
        Side::Cpm => &mappings.cpm,
        Side::Simple => &mappings.simple,
    };
    let mut next = relay_on(msg, Method::Send, paths, env);
    let mut changes = Vec::new();
    let body = msg.body.clone().unwrap_or_default();
    let first_chunk = matches!(
        msg.byte_range()?,
        None | Some(crate::wire::msrp::ByteRange { start: 1, .. })
    );
    if media_is(msg.content_type(), "message/cpim") && first_chunk {
        // The CPIM header block is in the first chunk (RFC 4975 §7.1.1 chunks the CPIM
        // message as a whole); the rest of the body may follow in later chunks.
        let cpim = Cpim::parse(body.clone())?;
        let inner_iscomposing = media_is(cpim.content_type(), iscomposing::CONTENT_TYPE);
        if inner_iscomposing && whole(msg)? && target.iscomposing_in_session == Carriage::Bare {
            iscomposing::parse(cpim.body.clone())?;
            next.set_body(iscomposing::CONTENT_TYPE, cpim.body.clone());
            next.remove_header("Byte-Range");
        }
        if !cpim.imdn_disposition_notification().is_empty()
            && let Some(id) = cpim.imdn_message_id()
        {
            if id.is_empty() || id.len() > MAX_ID_LEN {
                return Err(TranslateError::Header {
                    header: "imdn.Message-ID",
                    reason: format!("must be 1 to {MAX_ID_LEN} characters"),
                });
            }
            changes.push(Change::Insert(Entry::Message(
                Bytes::copy_from_slice(id),
                Box::new(MessageOrigin {
                    side: from,
                    device: parties.sender.clone(),
                    recipient: parties.recipient.clone(),
                    conversation: parties.conversation.clone(),
                }),
            )));
        }
    } else if media_is(msg.content_type(), iscomposing::CONTENT_TYPE)
        && whole(msg)?
        && target.iscomposing_in_session == Carriage::Cpim
    {
        iscomposing::parse(body.clone())?;
        let mut cpim = Cpim::default();
        let addr = |u: &Bytes| format!("<{}>", String::from_utf8_lossy(u));
        cpim.headers.push(CpimHeader::new(
            None,
            b"From",
            addr(&parties.sender.aor).as_bytes(),
        ));
        cpim.headers.push(CpimHeader::new(
            None,
            b"To",
            addr(&parties.recipient).as_bytes(),
        ));
        cpim.headers
            .push(CpimHeader::new(None, b"DateTime", env.datetime.as_bytes()));
        cpim.content_headers.push((
            Bytes::from_static(b"Content-Type"),
            Bytes::from_static(iscomposing::CONTENT_TYPE.as_bytes()),
        ));
        cpim.body = body;
        next.set_body("message/cpim", cpim.to_bytes());
        next.remove_header("Byte-Range");
    }
    Ok(ChatOutcome {
        send: next,
        changes,
    })
}

/// Translate a REPORT received on one leg for the other leg `out` (RFC 4975 §7.1.2): the
/// status of a message reaches the leg it came from with its Message-ID, Byte-Range and Status.
pub fn chat_report(msg: &Message, out: &ChatLeg, env: &mut Env<'_>) -> Message {
    relay(msg, Method::Report, out, env)
}

/// The session a chunk received on the gateway's MSRP URI `session_id` belongs to, read from
/// the table: the leg to write to and who speaks. `NoDialog` (481, RFC 4975 §7.3 "session does
/// not exist") when the gateway knows no such session or the far leg is not set up yet.
pub fn route(
    session_id: &[u8],
    view: &dyn View,
    addrs: &Addresses,
) -> Result<(Side, ChatLeg, ChatParties), TranslateError> {
    let this = view.msrp(session_id).ok_or(TranslateError::NoDialog)?;
    let other = view
        .msrp(&this.peer_session)
        .ok_or(TranslateError::NoDialog)?;
    let path = other.remote_path.clone().ok_or(TranslateError::NoDialog)?;
    let remote_path = path
        .split(|b| *b == b' ')
        .filter(|u| !u.is_empty())
        .map(|u| MsrpUri::parse(path.slice_ref(u)))
        .collect::<Result<Vec<_>, _>>()?;
    let local = MsrpUri::parse(
        addrs
            .side(other.side)
            .leg(this.peer_session.clone())
            .msrp
            .uri_bytes(),
    )?;
    let dialog = |side: Side, call_id: Bytes| {
        view.dialog(&DialogKey { side, call_id })
            .ok_or(TranslateError::NoDialog)
    };
    let this_dialog = dialog(this.side, this.call_id.clone())?;
    let other_dialog = dialog(other.side, other.call_id.clone())?;
    let user = |value: &Bytes| Bytes::from(aor(uri_of(&lossy(value))));
    let sender = device_of(
        user(&this_dialog.leg.remote_uri),
        Some(&this_dialog.leg.remote_target),
    )
    .map_err(|e| TranslateError::header("Contact", e))?;
    Ok((
        this.side,
        ChatLeg { local, remote_path },
        ChatParties {
            sender,
            recipient: user(&other_dialog.leg.remote_uri),
            conversation: this_dialog.conversation,
        },
    ))
}

/// Translate an MSRP request received on one of the gateway's legs, finding the session by
/// the last URI of its To-Path (the gateway's own, RFC 4975 §7.1): a SEND or a REPORT for the
/// other leg, and the side it goes to.
pub fn msrp_request(
    msg: &Message,
    view: &dyn View,
    mappings: &Mappings,
    addrs: &Addresses,
    env: &mut Env<'_>,
) -> Result<(Side, ChatOutcome), TranslateError> {
    let session_id = addressed_session(msg)?;
    let (from, out, parties) = route(&session_id, view, addrs)?;
    let route = Route {
        from,
        paths: paths_of(&out),
        parties,
    };
    translate_on(msg, &route, mappings, env)
}

/// The session-id of the last URI of a request's To-Path (the gateway's own, RFC 4975 §7.1);
/// every URI of the list must parse.
fn addressed_session(msg: &Message) -> Result<Bytes, TranslateError> {
    if msg.header("To-Path").is_none() {
        // The error `Message::to_path` gives.
        msg.to_path()?;
    }
    let mut last = None;
    for u in msg.to_path_uris() {
        last = Some(u?);
    }
    last.and_then(|u| u.session_id)
        .ok_or(TranslateError::NoDialog)
}

fn translate_on(
    msg: &Message,
    route: &Route,
    mappings: &Mappings,
    env: &mut Env<'_>,
) -> Result<(Side, ChatOutcome), TranslateError> {
    let outcome = match msg.method() {
        Some(Method::Report) => ChatOutcome {
            send: relay_on(msg, Method::Report, &route.paths, env),
            changes: Vec::new(),
        },
        _ => send_on(msg, route.from, &route.paths, &route.parties, mappings, env)?,
    };
    Ok((route.from.other(), outcome))
}

/// A session's route as [`route`] derives it from the table, with the paths it writes encoded.
#[derive(Debug)]
struct Route {
    /// The side the chunks come from.
    from: Side,
    /// To-Path and From-Path on the other leg.
    paths: Paths,
    /// Who speaks.
    parties: ChatParties,
}

/// How long a cached route is used without reading the table again, in milliseconds: the
/// table's entries expire (their time to live), and a route must stop working within this
/// of its entries' expiry as it did when it was derived for every chunk.
pub const ROUTE_MAX_AGE_MS: u64 = 1_000;

/// One cached route: the session-id it is for, the table generation and time it was derived at.
#[derive(Debug)]
struct CachedRoute {
    session_id: Bytes,
    generation: u64,
    at: Millis,
    route: Arc<Route>,
}

/// The routes of one session's two legs ([`route`]), derived from the table once instead of
/// for every chunk (the path parse, the users' addresses and the dialog look-ups cost several
/// allocations per chunk). A route is derived again when the table's sessions change (the
/// caller's `generation`: `correlate::Table::sessions_generation`, bumped by every insert or
/// removal of a dialog or MSRP entry, so a re-INVITE that changes the far end's `a=path` or
/// Contact is seen by the next chunk), and at the latest [`ROUTE_MAX_AGE_MS`] after it was
/// derived (entries expire). Bounded: two routes.
#[derive(Debug, Default)]
pub struct RouteCache {
    slots: Mutex<[Option<CachedRoute>; 2]>,
}

impl RouteCache {
    /// An empty cache.
    pub fn new() -> Self {
        RouteCache::default()
    }

    fn get(&self, session_id: &[u8], generation: u64, now: Millis) -> Option<Arc<Route>> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.iter().flatten().find_map(|c| {
            (c.session_id == session_id
                && c.generation == generation
                && now >= c.at
                && now.0 - c.at.0 < ROUTE_MAX_AGE_MS)
                .then(|| c.route.clone())
        })
    }

    fn put(&self, session_id: Bytes, generation: u64, now: Millis, route: Arc<Route>) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let entry = CachedRoute {
            session_id,
            generation,
            at: now,
            route,
        };
        // Its own slot, else a free one, else the oldest.
        let i = slots
            .iter()
            .position(|c| c.as_ref().is_some_and(|c| c.session_id == entry.session_id))
            .or_else(|| slots.iter().position(Option::is_none))
            .unwrap_or_else(|| {
                let age = |c: &Option<CachedRoute>| c.as_ref().map_or(0, |c| c.at.0);
                let [a, b] = &*slots;
                usize::from(age(b) < age(a))
            });
        if let Some(slot) = slots.get_mut(i) {
            *slot = Some(entry);
        }
    }
}

/// [`msrp_request`] for the chunks of one session, with its routes cached in `cache`;
/// `generation` is the table's sessions generation read before `view` (see [`RouteCache`]).
/// `session_id`: the session-id of the last URI of `msg`'s To-Path when the caller has read it
/// already (the MSRP relay, for a request whose To-Path the codec checked, RFC 4975 §9: every
/// URI parses); `None`: read here. Same results as [`msrp_request`] on the same table.
// The inputs of `msrp_request` plus the cache, its generation and the session-id.
#[allow(clippy::too_many_arguments)]
pub fn msrp_request_cached(
    msg: &Message,
    session_id: Option<&Bytes>,
    view: &dyn View,
    generation: u64,
    cache: &RouteCache,
    mappings: &Mappings,
    addrs: &Addresses,
    env: &mut Env<'_>,
) -> Result<(Side, ChatOutcome), TranslateError> {
    let session_id = match session_id {
        Some(s) => s.clone(),
        None => addressed_session(msg)?,
    };
    let cached = cache.get(&session_id, generation, env.now);
    let route = match cached {
        Some(r) => r,
        None => {
            let (from, out, parties) = route(&session_id, view, addrs)?;
            let r = Arc::new(Route {
                from,
                paths: paths_of(&out),
                parties,
            });
            cache.put(session_id, generation, env.now, r.clone());
            r
        }
    };
    translate_on(msg, &route, mappings, env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Millis;
    use crate::translate::conversation::IdSource;
    use crate::wire::msrp::{Limits, parse};

    struct Fixed;
    impl IdSource for Fixed {
        fn fresh_id(&mut self) -> Bytes {
            Bytes::from_static(b"0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0")
        }
    }

    fn env(ids: &mut Fixed) -> Env<'_> {
        Env {
            now: Millis(0),
            ids,
            datetime: "2026-11-25T10:00:05.000Z",
        }
    }

    fn leg() -> ChatLeg {
        ChatLeg {
            local: MsrpUri::parse_str("msrp://127.0.0.1:2856/gwsimple;tcp").expect("uri"),
            remote_path: vec![
                MsrpUri::parse_str("msrp://203.0.113.5:7394/bobsess;tcp").expect("uri"),
            ],
        }
    }

    fn parties() -> ChatParties {
        ChatParties {
            sender: Device {
                aor: Bytes::from_static(b"sip:alice@cpm.example.net"),
                gruu: None,
                instance: Some(Bytes::from_static(b"urn:gsma:imei:1")),
            },
            recipient: Bytes::from_static(b"sip:bob@simple.example.net"),
            conversation: None,
        }
    }

    fn msrp(text: &str) -> Message {
        parse(Bytes::from(text.replace('\n', "\r\n")), &Limits::default()).expect("valid MSRP")
    }

    #[test]
    fn a_text_chunk_is_relayed_with_new_paths_and_the_same_body() {
        let vector = include_bytes!("../../tests/vectors/msrp/rfc4975-4-send.txt");
        let incoming = parse(Bytes::from_static(vector), &Limits::default()).expect("vector");
        let mappings = Mappings::embedded().expect("mappings");
        let out = chat_send(
            &incoming,
            Side::Cpm,
            &leg(),
            &parties(),
            &mappings,
            &mut env(&mut Fixed),
        )
        .expect("relayed");
        let m = out.send;
        assert_eq!(&m.transaction_id[..], b"0f1e2d3c4b5a49688776a5b4c3d2e1f0");
        assert_eq!(
            m.header("To-Path").map(|v| &v[..]),
            Some(&b"msrp://203.0.113.5:7394/bobsess;tcp"[..])
        );
        assert_eq!(
            m.header("From-Path").map(|v| &v[..]),
            Some(&b"msrp://127.0.0.1:2856/gwsimple;tcp"[..])
        );
        assert_eq!(m.message_id(), incoming.message_id());
        assert_eq!(m.header("Byte-Range"), incoming.header("Byte-Range"));
        assert_eq!(m.body, incoming.body);
        assert!(out.changes.is_empty());
        let wire = m.to_bytes();
        let again = parse(wire, &Limits::default()).expect("the relayed chunk parses");
        assert_eq!(again.body, incoming.body);
    }

    #[test]
    fn a_cpim_message_asking_for_notifications_is_remembered() {
        let incoming = msrp(
            "MSRP t7f0 SEND
To-Path: msrp://127.0.0.1:2855/gwcpm;tcp
From-Path: msrp://192.0.2.10:9/s111271x;tcp
Message-ID: msg-0001
Byte-Range: 1-*/*
Content-Type: message/cpim

From: <sip:alice@cpm.example.net>
To: <sip:bob@simple.example.net>
NS: imdn <urn:ietf:params:imdn>
imdn.Message-ID: Chat-Msg-1
imdn.Disposition-Notification: positive-delivery, display

Content-Type: text/plain

Hi Bob
-------t7f0$
",
        );
        let mappings = Mappings::embedded().expect("mappings");
        let out = chat_send(
            &incoming,
            Side::Cpm,
            &leg(),
            &parties(),
            &mappings,
            &mut env(&mut Fixed),
        )
        .expect("relayed");
        assert_eq!(out.send.body, incoming.body, "CPIM crosses unchanged");
        match out.changes.as_slice() {
            [Change::Insert(Entry::Message(id, origin))] => {
                assert_eq!(&id[..], b"Chat-Msg-1");
                assert_eq!(origin.side, Side::Cpm);
                assert_eq!(origin.device, parties().sender);
            }
            other => panic!("unexpected changes {other:?}"),
        }
    }

    #[test]
    fn wrapped_iscomposing_is_unwrapped_for_a_bare_side_and_bad_xml_refused() {
        let xml = "<isComposing xmlns=\"urn:ietf:params:xml:ns:im-iscomposing\"><state>active</state></isComposing>";
        let text = format!(
            "MSRP t8x0 SEND
To-Path: msrp://127.0.0.1:2855/gwcpm;tcp
From-Path: msrp://192.0.2.10:9/s111271x;tcp
Message-ID: msg-0002
Byte-Range: 1-*/*
Content-Type: message/cpim

From: <sip:alice@cpm.example.net>
To: <sip:bob@simple.example.net>

Content-Type: application/im-iscomposing+xml

{xml}
-------t8x0$
"
        );
        let mappings = Mappings::embedded().expect("mappings");
        let out = chat_send(
            &msrp(&text),
            Side::Cpm,
            &leg(),
            &parties(),
            &mappings,
            &mut env(&mut Fixed),
        )
        .expect("relayed");
        assert_eq!(
            out.send.content_type().map(|c| &c[..]),
            Some(iscomposing::CONTENT_TYPE.as_bytes())
        );
        assert_eq!(out.send.body.as_deref(), Some(xml.as_bytes()));
        assert_eq!(out.send.header("Byte-Range"), None, "a new whole message");
        let bad = text.replace("<state>active</state>", "<state>typing</state>");
        let err = chat_send(
            &msrp(&bad),
            Side::Cpm,
            &leg(),
            &parties(),
            &mappings,
            &mut env(&mut Fixed),
        )
        .expect_err("refused");
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn a_report_goes_back_with_its_status() {
        let vector = include_bytes!("../../tests/vectors/msrp/rfc4975-11.6-report.txt");
        let report = parse(Bytes::from_static(vector), &Limits::default()).expect("vector");
        let out = chat_report(&report, &leg(), &mut env(&mut Fixed));
        assert_eq!(out.method(), Some(&Method::Report));
        assert_eq!(out.header("Status"), report.header("Status"));
        assert_eq!(out.message_id(), report.message_id());
        assert_eq!(
            out.header("To-Path").map(|v| &v[..]),
            Some(&b"msrp://203.0.113.5:7394/bobsess;tcp"[..])
        );
    }
}
