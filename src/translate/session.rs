//! Chat sessions (INVITE with an MSRP offer) across the two networks. The gateway is a
//! back-to-back user agent (RFC 7092 §3.1): the INVITE it sends is a new dialog with the gateway
//! as its endpoint (its Contact, its MSRP URI in the SDP), carrying the end-to-end fields of the
//! received one; the dialogs and the two MSRP legs are remembered in the table so that what
//! follows (the answer, BYE, MSRP SENDs) finds the other leg.

use bytes::Bytes;

use std::net::SocketAddr;

use super::addr::{aor, uri_of, with_tag};
use super::conversation::{for_simple_contribution, remember_cpm_contribution};
use super::feature_tags;
use super::leg::{
    conversation_key, copy_end_to_end, cpm_ids, cpm_service, lossy, new_leg, rewrite_service_tags,
    write_ids,
};
use super::params::{ContactParams, param_name, split_top};
use super::response::answer_with;
use super::sdp::{MsrpEndpoint, answer_role, for_other_leg};
use super::state::{Change, DialogKey, DialogPeer, Entry, Key, LegDialog, MsrpPeer, Side, View};
use super::{Env, Outcome, Reply, TranslateError};
use crate::mapping::{Mappings, Service};
use crate::wire::sdp::{MsrpMedia, Sdp, Setup};
use crate::wire::sip::{SipMessage, method_name};
use crate::wire::text::media_type_is as media_is;

/// What the gateway is on one side of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalLeg {
    /// The gateway's Contact URI on this side: the remote target of the dialog
    /// (RFC 3261 §12.1.1), e.g. `sip:iwf@127.0.0.1:5062`.
    pub contact: String,
    /// The gateway's MSRP endpoint on this side, for this session.
    pub msrp: MsrpEndpoint,
}

/// A translated INVITE and what the node needs to set the session up.
#[derive(Debug)]
pub struct SessionOffer {
    /// The INVITE to send and the entries to remember.
    pub outcome: Outcome,
    /// The received MSRP stream: the caller's `a=path` and role, for the node's connection on
    /// the received leg.
    pub received_media: MsrpMedia,
    /// The service of the session.
    pub service: Service,
}

/// The SIMPLE IM service of an INVITE (docs/interworking-notes.md §1.4): large message by its
/// tag, file transfer by `a=file-selector` (RFC 5547 §5), group chat by a focus Contact
/// (`isfocus`, RFC 4579 §3), chat otherwise.
fn simple_service(
    msg: &SipMessage,
    sdp: &Sdp,
    mappings: &Mappings,
) -> Result<Service, TranslateError> {
    let large = &mappings.service(Service::LargeMessage).simple_feature_tag;
    for name in ["Accept-Contact", "Contact"] {
        for v in msg.header_all(name) {
            if feature_tags::has_simple_tag(v, large)
                .map_err(|e| TranslateError::header("Accept-Contact", e))?
            {
                return Ok(Service::LargeMessage);
            }
        }
    }
    let file_selector = sdp.lines().iter().any(|l| {
        l.attribute()
            .is_some_and(|a| a.name.eq_ignore_ascii_case(b"file-selector"))
    });
    if file_selector {
        return Ok(Service::FileTransfer);
    }
    if let Some(contact) = msg.header("Contact") {
        let first = split_top(contact, b',')
            .map_err(|e| TranslateError::header("Contact", e))?
            .into_iter()
            .next()
            .unwrap_or_default();
        let parsed =
            ContactParams::parse(first).map_err(|e| TranslateError::header("Contact", e))?;
        if parsed
            .params
            .iter()
            .any(|p| param_name(p).eq_ignore_ascii_case("isfocus"))
        {
            return Ok(Service::GroupChat);
        }
    }
    Ok(Service::Chat)
}

/// The gateway's Contact on a side, with the service's tag as that side writes it.
fn gateway_contact(local: &LocalLeg, side: Side, service: Service, mappings: &Mappings) -> String {
    let ids = mappings.service(service);
    match side {
        Side::Simple => format!("<{}>;{}", local.contact, ids.simple_feature_tag),
        Side::Cpm => format!(
            "<{}>;{}=\"{}\"",
            local.contact,
            feature_tags::ICSI_REF,
            ids.cpm_icsi_escaped
        ),
    }
}

/// The SDP of a message, when its Content-Type says it has one (RFC 3261 §13.2.1).
fn sdp_of(msg: &SipMessage) -> Result<Sdp, TranslateError> {
    let is_sdp = msg.content_type().is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/sdp"))
    });
    if !is_sdp || msg.body().is_empty() {
        // The gateway relays MSRP: it needs the caller's offer to build its own.
        return Err(TranslateError::NoOffer);
    }
    Ok(Sdp::parse(msg.body().clone())?)
}

/// The gateway's own addresses on one side, from the node's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideAddresses {
    /// The gateway's Contact URI on this side, e.g. `sip:iwf@127.0.0.1:5062`.
    pub contact: String,
    /// Where the gateway listens for MSRP on this side.
    pub msrp: SocketAddr,
    /// `msrps` (MSRP over TLS) on this side.
    pub secure: bool,
}

impl SideAddresses {
    /// The gateway on this side for the session whose MSRP session-id is `session_id`.
    pub fn leg(&self, session_id: Bytes) -> LocalLeg {
        LocalLeg {
            contact: self.contact.clone(),
            msrp: MsrpEndpoint {
                addr: self.msrp,
                session_id,
                secure: self.secure,
            },
        }
    }
}

/// The gateway's own addresses on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addresses {
    /// On the CPM side.
    pub cpm: SideAddresses,
    /// On the SIMPLE IM side.
    pub simple: SideAddresses,
}

impl Addresses {
    /// The addresses on `side`.
    pub fn side(&self, side: Side) -> &SideAddresses {
        match side {
            Side::Cpm => &self.cpm,
            Side::Simple => &self.simple,
        }
    }
}

/// One MSRP leg of a session whose far end is now known: what the node's relay needs to
/// connect it (RFC 4975 §5.4, RFC 6135 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsrpLeg {
    /// The side of the leg.
    pub side: Side,
    /// The session-id of the gateway's MSRP URI on this leg.
    pub local_session: Bytes,
    /// The gateway's role on this leg: `Active` connects, `Passive` waits.
    pub setup: Setup,
    /// The far end's MSRP stream: its `a=path` and attributes.
    pub peer: MsrpMedia,
}

/// An MSRP session-id for one of the gateway's legs (RFC 4975 §6: `1*(unreserved / "+" / "="
/// / "/")`, hard to guess, §14.1): a fresh identity, which is UUID-shaped.
fn fresh_session_id(env: &mut Env<'_>) -> Bytes {
    let id = env.ids.fresh_id();
    let ok = |b: &u8| b.is_ascii_alphanumeric() || b"-._~+=/".contains(b);
    if id.iter().all(ok) && !id.is_empty() {
        id
    } else {
        Bytes::from(id.iter().copied().filter(ok).collect::<Vec<u8>>())
    }
}

/// `Record-Route` values of `msg` as one `Route` value, in received order or reversed.
fn route_set(msg: &SipMessage, reversed: bool) -> Option<Bytes> {
    let mut routes: Vec<&str> = msg
        .header_all("Record-Route")
        .flat_map(|v| split_top(v, b',').unwrap_or_else(|_| vec![v]))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    if routes.is_empty() {
        return None;
    }
    if reversed {
        routes.reverse();
    }
    Some(Bytes::from(routes.join(", ")))
}

fn without_tag(value: &str, header: &'static str) -> Result<Bytes, TranslateError> {
    with_tag(value, None)
        .map(Bytes::from)
        .map_err(|e| TranslateError::header(header, e))
}

/// An `a=path` as one value: its URIs separated by spaces (RFC 4975 §8.2).
fn path_value(media: &MsrpMedia) -> Bytes {
    let parts: Vec<&[u8]> = media.path.iter().map(|b| b.as_ref()).collect();
    Bytes::from(parts.join(&b' '))
}

fn copied(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Translate an INVITE that arrived from `from` (a new session: its To has no tag). The
/// gateway answers the caller on this leg and calls the callee on a new leg; both legs get a
/// fresh MSRP session-id of the gateway's.
pub fn invite_request(
    msg: &SipMessage,
    from: Side,
    view: &dyn View,
    mappings: &Mappings,
    addrs: &Addresses,
    env: &mut Env<'_>,
) -> Result<SessionOffer, TranslateError> {
    let to = from.other();
    let sdp = sdp_of(msg)?;
    let (rules, target) = match to {
        Side::Simple => (&mappings.cpm_to_simple, &mappings.simple),
        Side::Cpm => (&mappings.simple_to_cpm, &mappings.cpm),
    };
    let service = match from {
        Side::Cpm => cpm_service(msg, mappings)?.unwrap_or(Service::Chat),
        Side::Simple => simple_service(msg, &sdp, mappings)?,
    };
    let in_call_id = msg.call_id().ok_or(TranslateError::Missing("Call-ID"))?;
    let from_value = msg.header("From").ok_or(TranslateError::Missing("From"))?;
    let to_value = msg.header("To").ok_or(TranslateError::Missing("To"))?;
    let from_uri = uri_of(from_value).to_string();
    let to_uri = uri_of(to_value).to_string();
    let request_uri = msg
        .request_uri()
        .map(|u| lossy(u).into_owned())
        .ok_or(TranslateError::Missing("Request-URI"))?;
    let caller_tag = msg.from_tag().ok_or(TranslateError::Missing("From tag"))?;
    // RFC 3261 §12.1.1: the caller's Contact is the remote target of the dialog.
    let caller_contact = msg
        .header("Contact")
        .map(uri_of)
        .filter(|u| !u.is_empty())
        .ok_or(TranslateError::Missing("Contact"))?;

    let in_session_id = fresh_session_id(env);
    let out_session = fresh_session_id(env);
    let out_leg = addrs.side(to).leg(out_session.clone());

    let mut out = new_leg(msg, rsip::Method::Invite, &request_uri, rules, env)?;
    // The dialog's remote target on the new leg is the gateway (RFC 3261 §12.1.2).
    out.remove_header("Contact");
    rewrite_service_tags(&mut out, to, service, mappings)?;
    out.push_header("Contact", &gateway_contact(&out_leg, to, service, mappings))?;
    // The gateway offers on the new leg and connects, as RFC 4975 §5.4 has an offerer do by
    // default: legacy SIMPLE IM clients that know no a=setup expect it.
    let (offer, received_media) = for_other_leg(&sdp, &out_leg.msrp, Setup::Active, target)?;
    out.set_body_with_type(Some("application/sdp"), offer.to_bytes())?;

    let key = conversation_key(from, &aor(&from_uri), &aor(&to_uri));
    let mut outcome = Outcome::default();
    let conversation = match to {
        Side::Simple => {
            let ids = cpm_ids(msg)?;
            if let Some(ids) = &ids {
                outcome.changes.push(remember_cpm_contribution(key, ids));
            }
            ids
        }
        Side::Cpm => {
            let (ids, change) = for_simple_contribution(view, key, env.ids);
            write_ids(&mut out, &ids)?;
            outcome.changes.push(change);
            Some(ids)
        }
    };
    let out_call_id = copied(out.call_id().ok_or(TranslateError::Missing("Call-ID"))?);
    let in_call_id = copied(in_call_id);
    let in_role = answer_role(received_media.setup);
    // The leg the gateway answers (RFC 3261 §12.1.1): its To tag is chosen now, so that every
    // response on this leg carries the same one.
    let in_leg = LegDialog {
        local_tag: env.ids.fresh_id(),
        remote_tag: Some(copied(caller_tag)),
        local_uri: without_tag(to_value, "To")?,
        remote_uri: without_tag(from_value, "From")?,
        remote_target: copied(caller_contact),
        route_set: route_set(msg, false),
        local_cseq: 0,
        msrp_setup: Some(in_role),
    };
    // The leg the gateway calls on (§12.1.2): the far end's tag and target come with its 2xx.
    let out_from = out.header("From").ok_or(TranslateError::Missing("From"))?;
    let out_leg_dialog = LegDialog {
        local_tag: copied(out.from_tag().ok_or(TranslateError::Missing("From tag"))?),
        remote_tag: None,
        local_uri: without_tag(out_from, "From")?,
        remote_uri: without_tag(out.header("To").unwrap_or_default(), "To")?,
        remote_target: Bytes::from(request_uri),
        route_set: None,
        local_cseq: 1,
        msrp_setup: Some(Setup::Active),
    };
    outcome.changes.extend([
        Change::Insert(Entry::Dialog(
            DialogKey {
                side: from,
                call_id: in_call_id.clone(),
            },
            Box::new(DialogPeer {
                call_id: out_call_id.clone(),
                conversation: conversation.clone(),
                msrp_session: Some(in_session_id.clone()),
                service,
                leg: in_leg,
            }),
        )),
        Change::Insert(Entry::Dialog(
            DialogKey {
                side: to,
                call_id: out_call_id.clone(),
            },
            Box::new(DialogPeer {
                call_id: in_call_id.clone(),
                conversation,
                msrp_session: Some(out_session.clone()),
                service,
                leg: out_leg_dialog,
            }),
        )),
        Change::Insert(Entry::Msrp(
            in_session_id.clone(),
            MsrpPeer {
                side: from,
                peer_session: out_session.clone(),
                call_id: in_call_id,
                remote_path: Some(path_value(&received_media)),
            },
        )),
        Change::Insert(Entry::Msrp(
            out_session,
            MsrpPeer {
                side: to,
                peer_session: in_session_id.clone(),
                call_id: out_call_id,
                remote_path: None,
            },
        )),
    ]);
    outcome.msrp.push(MsrpLeg {
        side: from,
        local_session: in_session_id,
        setup: in_role,
        peer: received_media.clone(),
    });
    outcome.send.push((to, out));
    Ok(SessionOffer {
        outcome,
        received_media,
        service,
    })
}

/// Both legs of the session a request on `from`'s leg belongs to: that leg's entry and the
/// other's. `None` when the gateway knows no such dialog (RFC 3261 §12.2.2: 481).
pub fn legs_of(
    msg: &SipMessage,
    from: Side,
    view: &dyn View,
) -> Result<(DialogPeer, DialogPeer), TranslateError> {
    let call_id = msg.call_id().ok_or(TranslateError::Missing("Call-ID"))?;
    let this = view
        .dialog(&DialogKey {
            side: from,
            call_id: copied(call_id),
        })
        .ok_or(TranslateError::NoDialog)?;
    let other = view
        .dialog(&DialogKey {
            side: from.other(),
            call_id: this.call_id.clone(),
        })
        .ok_or(TranslateError::NoDialog)?;
    Ok((this, other))
}

/// Entries to forget when a session ends: both dialogs and both MSRP legs.
pub fn forget_session(from: Side, this: &DialogPeer, other: &DialogPeer) -> Vec<Change> {
    let mut changes = vec![
        Change::Remove(Key::Dialog(DialogKey {
            side: from.other(),
            call_id: this.call_id.clone(),
        })),
        Change::Remove(Key::Dialog(DialogKey {
            side: from,
            call_id: other.call_id.clone(),
        })),
    ];
    for sid in [&this.msrp_session, &other.msrp_session]
        .into_iter()
        .flatten()
    {
        changes.push(Change::Remove(Key::Msrp(sid.clone())));
    }
    changes
}

/// The answer on the caller's leg for the far side's response `far` to the gateway's INVITE
/// or in-dialog request. `request` is what the gateway received from `from`. A 2xx to an
/// INVITE gets the gateway's Contact and MSRP endpoint on the caller's leg (RFC 6135 §4.2
/// role as chosen at the offer, the caller side's content types) and completes the far leg's
/// dialog (§12.1.2); a final failure of the INVITE that opened the session forgets it. A
/// second 2xx from another fork (CPM 2.0 §4.2, auto-answering devices) is not relayed: the
/// gateway ACKs and hangs it up (RFC 3261 §13.2.2.4).
pub fn session_response(
    request: &SipMessage,
    from: Side,
    far: &SipMessage,
    view: &dyn View,
    mappings: &Mappings,
    addrs: &Addresses,
    env: &mut Env<'_>,
) -> Result<Outcome, TranslateError> {
    let code = far
        .status_code()
        .ok_or(TranslateError::Missing("status code"))?;
    let mut outcome = Outcome::default();
    let (this, other) = match legs_of(request, from, view) {
        Ok(legs) => legs,
        // Not a session (a pager MESSAGE): a plain answer.
        Err(TranslateError::NoDialog) => {
            if code > 100 {
                outcome
                    .send
                    .push((from, answer_with(request, far, None, env)?));
            }
            return Ok(outcome);
        }
        Err(e) => return Err(e),
    };
    if code == 100 {
        // Hop by hop (RFC 3261 §8.2.6.1): the node's server transaction sent its own.
        return Ok(outcome);
    }
    let to = from.other();
    let tag = lossy(&this.leg.local_tag).into_owned();
    let is_invite = request.method() == Some(&rsip::Method::Invite);
    let initial = request.to_tag().is_none();
    if !(is_invite && (200..300).contains(&code)) {
        let answer = answer_with(request, far, Some(&tag), env)?;
        if is_invite && initial && code >= 300 {
            outcome.changes.extend(forget_session(from, &this, &other));
        }
        outcome.send.push((from, answer));
        return Ok(outcome);
    }
    let far_tag = far.to_tag().ok_or(TranslateError::Missing("To tag"))?;
    if let Some(known) = &other.leg.remote_tag
        && known.as_ref() != far_tag.as_bytes()
        && initial
    {
        outcome
            .send
            .extend(hang_up_fork(far, &other.leg)?.map(|m| (to, m)));
        return Ok(outcome);
    }
    let mut answer = answer_with(request, far, Some(&tag), env)?;
    let local = addrs
        .side(from)
        .leg(this.msrp_session.clone().unwrap_or_default());
    answer.push_header(
        "Contact",
        &gateway_contact(&local, from, this.service, mappings),
    )?;
    // The far end's dialog: its tag, its target (refreshed by every 2xx, §12.2.1.2), and on
    // the first 2xx its route set (§12.1.2: Record-Route reversed).
    let mut far_leg = other.clone();
    if far_leg.leg.remote_tag.is_none() {
        far_leg.leg.remote_tag = Some(copied(far_tag));
        far_leg.leg.route_set = route_set(far, true);
    }
    if let Some(contact) = far.header("Contact").map(uri_of).filter(|u| !u.is_empty()) {
        far_leg.leg.remote_target = copied(contact);
    }
    if far.content_type().is_some() && !far.body().is_empty() {
        let target = match from {
            Side::Cpm => &mappings.cpm,
            Side::Simple => &mappings.simple,
        };
        let far_sdp = sdp_of(far)?;
        let role = this.leg.msrp_setup.unwrap_or(Setup::Passive);
        let (sdp, far_media) = for_other_leg(&far_sdp, &local.msrp, role, target)?;
        answer.set_body_with_type(Some("application/sdp"), sdp.to_bytes())?;
        if let Some(sid) = &other.msrp_session {
            // The far leg's MSRP peer is now known: chunks for it find their To-Path.
            outcome.changes.push(Change::Insert(Entry::Msrp(
                sid.clone(),
                MsrpPeer {
                    side: to,
                    peer_session: this.msrp_session.clone().unwrap_or_default(),
                    call_id: this.call_id.clone(),
                    remote_path: Some(path_value(&far_media)),
                },
            )));
            outcome.msrp.push(MsrpLeg {
                side: to,
                local_session: sid.clone(),
                setup: other.leg.msrp_setup.unwrap_or(Setup::Active),
                peer: far_media,
            });
        }
    }
    outcome.changes.push(Change::Insert(Entry::Dialog(
        DialogKey {
            side: to,
            call_id: this.call_id.clone(),
        },
        Box::new(far_leg),
    )));
    outcome.send.push((from, answer));
    Ok(outcome)
}

/// ACK and BYE for a 2xx from a fork other than the one the session went on with
/// (RFC 3261 §13.2.2.4: every 2xx is acknowledged; the extra dialog is then ended).
fn hang_up_fork(far: &SipMessage, leg: &LegDialog) -> Result<[SipMessage; 2], TranslateError> {
    let target = far
        .header("Contact")
        .map(uri_of)
        .filter(|u| !u.is_empty())
        .ok_or(TranslateError::Missing("Contact"))?;
    let cseq = far.cseq().map_or(1, |c| c.seq);
    let to = far.header("To").ok_or(TranslateError::Missing("To"))?;
    let call_id = far.call_id().ok_or(TranslateError::Missing("Call-ID"))?;
    let routes = route_set(far, true);
    let build = |method: rsip::Method, seq: u32| -> Result<SipMessage, TranslateError> {
        let mut m = SipMessage::request(method, target)?;
        if let Some(r) = &routes {
            m.push_header("Route", &lossy(r))?;
        }
        m.push_header("Max-Forwards", "70")?;
        m.push_header(
            "From",
            &format!("{};tag={}", lossy(&leg.local_uri), lossy(&leg.local_tag)),
        )?;
        m.push_header("To", to)?;
        m.push_header("Call-ID", call_id)?;
        m.push_header("CSeq", &format!("{seq} {}", method_name(&method)))?;
        Ok(m)
    };
    Ok([
        build(rsip::Method::Ack, cseq)?,
        build(rsip::Method::Bye, cseq.saturating_add(1))?,
    ])
}

/// A request the gateway sends inside the dialog of `leg` (RFC 3261 §12.2.1.1): Request-URI
/// the remote target, Route the route set, From/To with the dialog's tags, the leg's Call-ID,
/// and the end-to-end fields of `incoming` by the direction's rules.
fn in_dialog(
    incoming: Option<&SipMessage>,
    method: rsip::Method,
    call_id: &[u8],
    leg: &LegDialog,
    seq: u32,
    rules: &crate::mapping::HeaderRules,
) -> Result<SipMessage, TranslateError> {
    let mut out = SipMessage::request(method, &lossy(&leg.remote_target))?;
    if let Some(r) = &leg.route_set {
        out.push_header("Route", &lossy(r))?;
    }
    out.push_header("Max-Forwards", "70")?;
    out.push_header(
        "From",
        &format!("{};tag={}", lossy(&leg.local_uri), lossy(&leg.local_tag)),
    )?;
    let to = match &leg.remote_tag {
        Some(t) => format!("{};tag={}", lossy(&leg.remote_uri), lossy(t)),
        None => lossy(&leg.remote_uri).into_owned(),
    };
    out.push_header("To", &to)?;
    out.push_header("Call-ID", &lossy(call_id))?;
    out.push_header("CSeq", &format!("{seq} {}", method_name(&method)))?;
    if let Some(incoming) = incoming {
        copy_end_to_end(&mut out, incoming, rules, &["Contact"])?;
    }
    Ok(out)
}

/// Translate a request inside a session's dialog (its To has a tag): ACK, BYE, a re-INVITE or
/// any other method, relayed on the other leg's dialog. BYE ends the session: its entries are
/// forgotten (the node matches the far side's answer by its own transaction).
pub fn in_dialog_request(
    msg: &SipMessage,
    from: Side,
    view: &dyn View,
    mappings: &Mappings,
    addrs: &Addresses,
) -> Result<Outcome, TranslateError> {
    let to = from.other();
    let (this, other) = legs_of(msg, from, view)?;
    let rules = match to {
        Side::Simple => &mappings.cpm_to_simple,
        Side::Cpm => &mappings.simple_to_cpm,
    };
    let method = *msg.method().ok_or(TranslateError::Missing("method"))?;
    let mut outcome = Outcome::default();
    // ACK takes the CSeq number of the INVITE it acknowledges (§13.2.2.4); every other request
    // the next number of the gateway's own sequence on that leg (§12.2.1.1).
    let seq = if method == rsip::Method::Ack {
        other.leg.local_cseq.max(1)
    } else {
        other.leg.local_cseq.saturating_add(1)
    };
    let mut out = in_dialog(Some(msg), method, &this.call_id, &other.leg, seq, rules)?;
    let has_sdp = msg
        .content_type()
        .is_some_and(|ct| media_is(ct.as_bytes(), "application/sdp"))
        && !msg.body().is_empty();
    match method {
        rsip::Method::Ack => {}
        rsip::Method::Bye => outcome.changes.extend(forget_session(from, &this, &other)),
        _ => {
            let mut next = other.clone();
            next.leg.local_cseq = seq;
            if method == rsip::Method::Invite || method == rsip::Method::Update {
                // A target refresh request carries the sender's Contact (§12.2.1.1).
                let local = addrs
                    .side(to)
                    .leg(other.msrp_session.clone().unwrap_or_default());
                out.push_header(
                    "Contact",
                    &gateway_contact(&local, to, other.service, mappings),
                )?;
                // The far end may have moved (§12.2.2: a refresh updates the remote target).
                let mut this_next = this.clone();
                if let Some(c) = msg.header("Contact").map(uri_of).filter(|u| !u.is_empty()) {
                    this_next.leg.remote_target = copied(c);
                }
                outcome.changes.push(Change::Insert(Entry::Dialog(
                    DialogKey {
                        side: from,
                        call_id: other.call_id.clone(),
                    },
                    Box::new(this_next),
                )));
            }
            outcome.changes.push(Change::Insert(Entry::Dialog(
                DialogKey {
                    side: to,
                    call_id: this.call_id.clone(),
                },
                Box::new(next),
            )));
        }
    }
    if has_sdp && method != rsip::Method::Ack {
        let sdp = sdp_of(msg)?;
        let target = match to {
            Side::Simple => &mappings.simple,
            Side::Cpm => &mappings.cpm,
        };
        let local = addrs
            .side(to)
            .leg(other.msrp_session.clone().unwrap_or_default());
        // A re-offer keeps the roles of the connection that exists (RFC 6135 §4.1, RFC 4145
        // §4.1: the same roles mean the same connection).
        let role = other.leg.msrp_setup.unwrap_or(Setup::Active);
        let (offer, _) = for_other_leg(&sdp, &local.msrp, role, target)?;
        out.set_body_with_type(Some("application/sdp"), offer.to_bytes())?;
    } else if !msg.body().is_empty() && method != rsip::Method::Ack {
        let ct = msg.content_type().map(str::to_string);
        out.set_body_with_type(ct.as_deref(), msg.body().clone())?;
    }
    outcome.send.push((to, out));
    Ok(outcome)
}

/// The gateway ends a session on its own (its MSRP connection failed, RFC 4975 §5.4 leaves the
/// session unusable): a BYE on each leg's dialog, with a Reason (RFC 3326 §2), and the session
/// forgotten. `session_id` is the gateway's MSRP session-id on either leg.
pub fn hang_up(
    session_id: &[u8],
    view: &dyn View,
    mappings: &Mappings,
    reason: &str,
) -> Result<Outcome, TranslateError> {
    let msrp = view.msrp(session_id).ok_or(TranslateError::NoDialog)?;
    let key = DialogKey {
        side: msrp.side,
        call_id: msrp.call_id,
    };
    let this = view.dialog(&key).ok_or(TranslateError::NoDialog)?;
    let other = view
        .dialog(&DialogKey {
            side: key.side.other(),
            call_id: this.call_id.clone(),
        })
        .ok_or(TranslateError::NoDialog)?;
    let mut outcome = Outcome::default();
    for (side, call_id, dialog) in [
        (key.side, &key.call_id, &this),
        (key.side.other(), &this.call_id, &other),
    ] {
        // A leg the far end never answered has no dialog to end.
        if dialog.leg.remote_tag.is_none() {
            continue;
        }
        let rules = match side {
            Side::Simple => &mappings.cpm_to_simple,
            Side::Cpm => &mappings.simple_to_cpm,
        };
        let seq = dialog.leg.local_cseq.saturating_add(1);
        let mut bye = in_dialog(None, rsip::Method::Bye, call_id, &dialog.leg, seq, rules)?;
        let text = reason.replace(['"', '\\', '\r', '\n'], " ");
        bye.push_header("Reason", &format!("SIP;cause=480;text=\"{text}\""))?;
        outcome.send.push((side, bye));
    }
    outcome
        .changes
        .extend(forget_session(key.side.other(), &other, &this));
    Ok(outcome)
}

/// End only the leg of MSRP session `session_id` (its MSRP connection dropped and the node
/// keeps the session's messages for that user, issue 7): BYE on that dialog (RFC 3261 §15.1.1)
/// with a Reason (RFC 3326); the other leg, and the table, stay as they are.
pub fn hang_up_leg(
    session_id: &[u8],
    view: &dyn View,
    mappings: &Mappings,
    reason: &str,
) -> Result<Outcome, TranslateError> {
    let msrp = view.msrp(session_id).ok_or(TranslateError::NoDialog)?;
    let key = DialogKey {
        side: msrp.side,
        call_id: msrp.call_id,
    };
    let this = view.dialog(&key).ok_or(TranslateError::NoDialog)?;
    let mut outcome = Outcome::default();
    if this.leg.remote_tag.is_none() {
        return Ok(outcome);
    }
    let rules = match key.side {
        Side::Simple => &mappings.cpm_to_simple,
        Side::Cpm => &mappings.simple_to_cpm,
    };
    let seq = this.leg.local_cseq.saturating_add(1);
    let mut bye = in_dialog(None, rsip::Method::Bye, &key.call_id, &this.leg, seq, rules)?;
    let text = reason.replace(['"', '\\', '\r', '\n'], " ");
    bye.push_header("Reason", &format!("SIP;cause=480;text=\"{text}\""))?;
    outcome.send.push((key.side, bye));
    Ok(outcome)
}

/// Translate a CANCEL of an INVITE the gateway relayed (RFC 3261 §9): the gateway answers the
/// CANCEL itself (200, §9.2) and cancels its own INVITE on the other leg, with that INVITE's
/// Request-URI, Call-ID, From, To and CSeq number (§9.1). The node gives it the Via of its
/// INVITE's client transaction. The INVITE's 487 then comes back through
/// [`session_response`] and ends the session.
pub fn cancel_request(
    msg: &SipMessage,
    from: Side,
    view: &dyn View,
) -> Result<Outcome, TranslateError> {
    let (this, other) = legs_of(msg, from, view)?;
    let leg = &other.leg;
    let mut out = SipMessage::request(rsip::Method::Cancel, &lossy(&leg.remote_target))?;
    out.push_header("Max-Forwards", "70")?;
    out.push_header(
        "From",
        &format!("{};tag={}", lossy(&leg.local_uri), lossy(&leg.local_tag)),
    )?;
    out.push_header("To", &lossy(&leg.remote_uri))?;
    out.push_header("Call-ID", &lossy(&this.call_id))?;
    out.push_header("CSeq", &format!("{} CANCEL", leg.local_cseq.max(1)))?;
    Ok(Outcome {
        send: super::few::Few::from_iter([(from.other(), out)]),
        reply: Some(Reply::OK),
        ..Outcome::default()
    })
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
