//! Pager-mode `MESSAGE` (RFC 3428) across the two networks: text, isComposing (RFC 3994 §3.3)
//! and IMDNs (RFC 5438 §7.2), in both directions.
//!
//! The gateway is a back-to-back user agent for a MESSAGE: the request it sends on the other
//! side is a new one (its own Call-ID, From tag and CSeq; the node adds its Via), carrying the
//! end-to-end header fields and the content of the one received, rewritten:
//! - service identification (`Contact`, `Accept-Contact`, `P-Preferred-Service`,
//!   `P-Asserted-Service`), by [`super::feature_tags`] and the mappings;
//! - the CPM conversation identities (CPM 2.0 SD 5.2.1.1): kept per pair of users on the way to
//!   SIMPLE IM, restored or generated on the way back ([`super::conversation`]);
//! - the body: `message/cpim` or bare, as the target side's mapping says (RFC 5438 §6 needs
//!   CPIM for IMDN requests);
//! - an IMDN goes back to the device that sent the message it is about (CPM 2.0 §4.2,
//!   [`super::device`]).

use bytes::Bytes;

use super::addr::{aor, uri_of, with_tag};
use super::conversation::{for_simple_contribution, remember_cpm_contribution};
use super::device::{device_of, route_to};
use super::feature_tags;
use super::state::{Change, ConversationIds, ConversationKey, Key, MessageOrigin, Side, View};
use super::{Env, Outcome, Reply, TranslateError};
use crate::mapping::{Carriage, HeaderRules, Mappings, Service};
use crate::wire::cpim::{Cpim, CpimHeader, NS_IMDN};
use crate::wire::imdn::{self, DeliveryStatus, Imdn, Notification};
use crate::wire::iscomposing;
use crate::wire::sip::SipMessage;

/// Header fields that belong to one hop or one leg and are never copied to the other side:
/// routing and transaction fields the node writes itself (RFC 3261 §16.6, §8.1.1), framing,
/// credentials of the other network, and IMS fields local to one operator's network (3GPP
/// TS 24.229 §5.2.6.3: P-Charging-*, P-Visited-Network-ID are removed at the network border).
const LEG_HEADERS: [&str; 17] = [
    "Via",
    "Route",
    "Record-Route",
    "Max-Forwards",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Content-Length",
    "Content-Type",
    "Path",
    "Service-Route",
    "Authorization",
    "Proxy-Authorization",
    "P-Charging-Vector",
    "P-Charging-Function-Addresses",
    "P-Visited-Network-ID",
];

/// The CPM conversation header fields (CPM 2.0 SD 5.2.1.1).
pub const CONVERSATION_ID: &str = "Conversation-ID";
/// See [`CONVERSATION_ID`].
pub const CONTRIBUTION_ID: &str = "Contribution-ID";
/// See [`CONVERSATION_ID`].
pub const IN_REPLY_TO_CONTRIBUTION_ID: &str = "InReplyTo-Contribution-ID";

const P_ASSERTED_SERVICE: &str = "P-Asserted-Service";
const P_PREFERRED_SERVICE: &str = "P-Preferred-Service";

/// Longest conversation identity accepted: they are UUIDs in practice (36 characters); the bound
/// keeps a hostile value out of the table.
pub const MAX_ID_LEN: usize = 256;

/// What a MESSAGE carries.
enum Content {
    /// A CPIM-wrapped IMDN (RFC 5438 §7.2.1.1), or a bare one.
    Imdn { imdn: Box<Imdn>, cpim: Option<Cpim> },
    /// isComposing, bare or CPIM-wrapped (RFC 3994 §3.3).
    IsComposing { cpim: Option<Cpim> },
    /// A message: CPIM-wrapped or bare content.
    Message { cpim: Option<Cpim> },
}

/// The media type of a Content-Type value, without parameters, lower-cased comparison helper.
fn media_is(content_type: &[u8], media: &str) -> bool {
    let m = content_type
        .split(|b| *b == b';')
        .next()
        .map(crate::wire::text::trim_ws)
        .unwrap_or_default();
    m.eq_ignore_ascii_case(media.as_bytes())
}

fn classify(msg: &SipMessage) -> Result<Content, TranslateError> {
    let ct = msg.content_type().unwrap_or("text/plain").as_bytes();
    let body = msg.body().clone();
    if media_is(ct, "message/cpim") {
        let cpim = Cpim::parse(body)?;
        let inner = cpim.content_type().cloned().unwrap_or_default();
        if media_is(&inner, imdn::CONTENT_TYPE) {
            let parsed = Imdn::parse(cpim.body.clone())?;
            return Ok(Content::Imdn {
                imdn: Box::new(parsed),
                cpim: Some(cpim),
            });
        }
        if media_is(&inner, iscomposing::CONTENT_TYPE) {
            iscomposing::parse(cpim.body.clone())?;
            return Ok(Content::IsComposing { cpim: Some(cpim) });
        }
        return Ok(Content::Message { cpim: Some(cpim) });
    }
    if media_is(ct, imdn::CONTENT_TYPE) {
        return Ok(Content::Imdn {
            imdn: Box::new(Imdn::parse(body)?),
            cpim: None,
        });
    }
    if media_is(ct, iscomposing::CONTENT_TYPE) {
        iscomposing::parse(body)?;
        return Ok(Content::IsComposing { cpim: None });
    }
    Ok(Content::Message { cpim: None })
}

/// The CPM service a request names (docs/interworking-notes.md §1.1: P-Asserted-Service, then
/// P-Preferred-Service, then the Contact ICSI, then the Accept-Contact ICSI). `None`: it names
/// none (a CPM client without ICSIs). An ICSI the mappings do not know is refused: the gateway
/// cannot interwork a service it cannot name on the other side.
pub fn cpm_service(
    msg: &SipMessage,
    mappings: &Mappings,
) -> Result<Option<Service>, TranslateError> {
    for name in [P_ASSERTED_SERVICE, P_PREFERRED_SERVICE] {
        for value in msg.header_all(name) {
            // The first URN decides (RFC 6050 §4.2: one service per request).
            if let Some(urn) = value.split(',').map(str::trim).find(|u| !u.is_empty()) {
                return match mappings.service_by_icsi(urn) {
                    Some(s) => Ok(Some(s)),
                    None => Err(TranslateError::UnknownService(urn.to_string())),
                };
            }
        }
    }
    for name in ["Contact", "Accept-Contact"] {
        for value in msg.header_all(name) {
            let services = feature_tags::cpm_services(value, mappings)
                .map_err(|e| TranslateError::header(name, e))?;
            if let Some(s) = services.first() {
                return Ok(Some(*s));
            }
            if has_icsi_ref(value) {
                return Err(TranslateError::UnknownService(value.to_string()));
            }
        }
    }
    Ok(None)
}

fn has_icsi_ref(value: &str) -> bool {
    value
        .to_ascii_lowercase()
        .contains(&feature_tags::ICSI_REF.to_ascii_lowercase())
}

/// A conversation identity header, bounded.
fn id_header(msg: &SipMessage, name: &'static str) -> Result<Option<Bytes>, TranslateError> {
    match msg.header(name) {
        None => Ok(None),
        Some(v) if v.is_empty() || v.len() > MAX_ID_LEN => Err(TranslateError::Header {
            header: name,
            reason: format!("must be 1 to {MAX_ID_LEN} characters"),
        }),
        // Copied: the table must not keep the whole message alive through a slice.
        Some(v) => Ok(Some(Bytes::copy_from_slice(v.as_bytes()))),
    }
}

/// The identities a CPM request carries, when it carries the two that are required together.
fn cpm_ids(msg: &SipMessage) -> Result<Option<ConversationIds>, TranslateError> {
    let conversation_id = id_header(msg, CONVERSATION_ID)?;
    let contribution_id = id_header(msg, CONTRIBUTION_ID)?;
    let in_reply_to = id_header(msg, IN_REPLY_TO_CONTRIBUTION_ID)?;
    Ok(match (conversation_id, contribution_id) {
        (Some(conversation_id), Some(contribution_id)) => Some(ConversationIds {
            conversation_id,
            contribution_id,
            in_reply_to,
        }),
        _ => None,
    })
}

fn write_ids(out: &mut SipMessage, ids: &ConversationIds) -> Result<(), TranslateError> {
    out.push_header(CONVERSATION_ID, &lossy(&ids.conversation_id))?;
    out.push_header(CONTRIBUTION_ID, &lossy(&ids.contribution_id))?;
    if let Some(r) = &ids.in_reply_to {
        out.push_header(IN_REPLY_TO_CONTRIBUTION_ID, &lossy(r))?;
    }
    Ok(())
}

fn lossy(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}

/// The pair of users of a MESSAGE, the CPM user first.
fn conversation_key(from: Side, from_aor: &str, to_aor: &str) -> ConversationKey {
    let (cpm, simple) = match from {
        Side::Cpm => (from_aor, to_aor),
        Side::Simple => (to_aor, from_aor),
    };
    ConversationKey {
        cpm_user: Bytes::copy_from_slice(cpm.as_bytes()),
        simple_user: Bytes::copy_from_slice(simple.as_bytes()),
    }
}

/// The request of the new leg: start line, the fields this leg owns, then the end-to-end
/// fields of `incoming` in their order, with the direction's rules applied.
fn new_leg(
    incoming: &SipMessage,
    request_uri: &str,
    rules: &HeaderRules,
    env: &mut Env<'_>,
) -> Result<SipMessage, TranslateError> {
    let from = incoming
        .header("From")
        .ok_or(TranslateError::Missing("From"))?;
    let to = incoming.header("To").ok_or(TranslateError::Missing("To"))?;
    let mut out = SipMessage::request(rsip::Method::Message, request_uri)?;
    out.push_header("Max-Forwards", "70")?;
    let tag = env.ids.fresh_id();
    out.push_header(
        "From",
        &with_tag(from, Some(&lossy(&tag))).map_err(|e| TranslateError::header("From", e))?,
    )?;
    out.push_header(
        "To",
        &with_tag(to, None).map_err(|e| TranslateError::header("To", e))?,
    )?;
    out.push_header("Call-ID", &lossy(&env.ids.fresh_id()))?;
    out.push_header("CSeq", "1 MESSAGE")?;
    for (name, value) in incoming.headers() {
        if LEG_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) || rules.drops(name) {
            continue;
        }
        out.push_header(rules.renamed(name).unwrap_or(name), value)?;
    }
    Ok(out)
}

/// Rewrite `Contact` and `Accept-Contact` of a request going to `to`.
fn rewrite_service_tags(
    out: &mut SipMessage,
    to: Side,
    service: Service,
    mappings: &Mappings,
) -> Result<(), TranslateError> {
    for name in ["Contact", "Accept-Contact"] {
        let values: Vec<String> = out.header_all(name).map(str::to_string).collect();
        if values.is_empty() {
            continue;
        }
        out.remove_header(name);
        for v in values {
            let new = match to {
                Side::Simple => feature_tags::to_simple(&v, mappings).map(|(v, _)| v),
                Side::Cpm => feature_tags::to_cpm(&v, service, mappings),
            }
            .map_err(|e| TranslateError::header(name, e))?;
            out.push_header(name, &new)?;
        }
    }
    if to == Side::Cpm {
        // RFC 6050 §4: the network asserts the service; the CPM side expects its ICSI.
        out.push_header(P_ASSERTED_SERVICE, &mappings.service(service).cpm_icsi)?;
    }
    Ok(())
}

/// Wrap a bare content in CPIM (RFC 3862 §2) for a side that wants CPIM, with an
/// `imdn.Message-ID` (RFC 5438 §6.3) so that the CPM side can refer to it.
fn wrap_in_cpim(
    msg: &SipMessage,
    from_uri: &str,
    to_uri: &str,
    message_id: Option<&[u8]>,
    env: &Env<'_>,
) -> Cpim {
    let mut cpim = Cpim::default();
    let addr = |u: &str| format!("<{u}>");
    cpim.headers
        .push(CpimHeader::new(None, b"From", addr(from_uri).as_bytes()));
    cpim.headers
        .push(CpimHeader::new(None, b"To", addr(to_uri).as_bytes()));
    cpim.headers
        .push(CpimHeader::new(None, b"DateTime", env.datetime.as_bytes()));
    if let Some(id) = message_id {
        cpim.set_ns(NS_IMDN, "imdn", "Message-ID", id);
    }
    let ct = msg.content_type().unwrap_or("text/plain");
    cpim.content_headers.push((
        Bytes::from_static(b"Content-Type"),
        Bytes::copy_from_slice(ct.as_bytes()),
    ));
    cpim.body = msg.body().clone();
    cpim
}

/// Put `content` on `out` in the form `carriage` says: the CPIM as received (no copy), its
/// content alone, or newly wrapped.
fn set_content(
    out: &mut SipMessage,
    incoming: &SipMessage,
    cpim: Option<&Cpim>,
    carriage: Carriage,
    wrap: impl FnOnce() -> Cpim,
) -> Result<(), TranslateError> {
    match (cpim, carriage) {
        (Some(_), Carriage::Cpim) | (None, Carriage::Bare | Carriage::Drop) => {
            let ct = incoming.content_type().unwrap_or("text/plain");
            out.set_body_with_type(Some(ct), incoming.body().clone())?;
        }
        (Some(c), Carriage::Bare | Carriage::Drop) => {
            let ct = c.content_type().map_or("text/plain".into(), |c| lossy(c));
            out.set_body_with_type(Some(&ct), c.body.clone())?;
        }
        (None, Carriage::Cpim) => {
            out.set_body_with_type(Some("message/cpim"), wrap().to_bytes())?;
        }
    }
    Ok(())
}

/// Translate a pager-mode MESSAGE that arrived from `from`.
pub fn message_request(
    msg: &SipMessage,
    from: Side,
    view: &dyn View,
    mappings: &Mappings,
    env: &mut Env<'_>,
) -> Result<Outcome, TranslateError> {
    let to = from.other();
    let (rules, target) = match to {
        Side::Simple => (&mappings.cpm_to_simple, &mappings.simple),
        Side::Cpm => (&mappings.simple_to_cpm, &mappings.cpm),
    };
    let service = match from {
        Side::Cpm => cpm_service(msg, mappings)?.unwrap_or(Service::Pager),
        // SIMPLE IM names no service beyond +g.oma.sip-im: a MESSAGE is pager mode
        // (docs/interworking-notes.md §1.4).
        Side::Simple => Service::Pager,
    };
    let from_uri = uri_of(msg.header("From").ok_or(TranslateError::Missing("From"))?).to_string();
    let to_uri = uri_of(msg.header("To").ok_or(TranslateError::Missing("To"))?).to_string();
    let request_uri = msg
        .request_uri()
        .map(|u| lossy(u).into_owned())
        .ok_or(TranslateError::Missing("Request-URI"))?;
    let key = conversation_key(from, &aor(&from_uri), &aor(&to_uri));
    let content = classify(msg)?;
    let mut outcome = Outcome::default();

    match content {
        Content::IsComposing { cpim } => {
            if target.iscomposing_pager == Carriage::Drop {
                // The side takes no pager isComposing (mappings/content.toml): accept, discard.
                outcome.reply = Some(Reply::OK);
                return Ok(outcome);
            }
            let mut out = new_leg(msg, &request_uri, rules, env)?;
            rewrite_service_tags(&mut out, to, service, mappings)?;
            if to == Side::Cpm
                && let Some(state) = view.conversation(&key)
            {
                out.push_header(CONVERSATION_ID, &lossy(&state.conversation_id))?;
            }
            set_content(
                &mut out,
                msg,
                cpim.as_ref(),
                target.iscomposing_pager,
                || wrap_in_cpim(msg, &from_uri, &to_uri, None, env),
            )?;
            outcome.send.push((to, out));
        }
        Content::Message { cpim } => {
            let mut out = new_leg(msg, &request_uri, rules, env)?;
            rewrite_service_tags(&mut out, to, service, mappings)?;
            let ids = match to {
                Side::Simple => cpm_ids(msg)?,
                Side::Cpm => {
                    let (ids, change) = for_simple_contribution(view, key.clone(), env.ids);
                    write_ids(&mut out, &ids)?;
                    outcome.changes.push(change);
                    Some(ids)
                }
            };
            if let (Side::Simple, Some(ids)) = (to, &ids) {
                outcome
                    .changes
                    .push(remember_cpm_contribution(key.clone(), ids));
            }
            // The Message-ID of a message that asks for notifications is remembered with the
            // device that sent it; a wrapped bare message gets a fresh one.
            let fresh_id =
                (cpim.is_none() && target.pager_body == Carriage::Cpim).then(|| env.ids.fresh_id());
            let message_id = match &cpim {
                Some(c) if !c.imdn_disposition_notification().is_empty() => {
                    c.imdn_message_id().map(|id| Bytes::copy_from_slice(id))
                }
                _ => None,
            };
            set_content(&mut out, msg, cpim.as_ref(), target.pager_body, || {
                wrap_in_cpim(msg, &from_uri, &to_uri, fresh_id.as_deref(), env)
            })?;
            if let Some(id) = message_id {
                if id.is_empty() || id.len() > MAX_ID_LEN {
                    return Err(TranslateError::Header {
                        header: "imdn.Message-ID",
                        reason: format!("must be 1 to {MAX_ID_LEN} characters"),
                    });
                }
                let contact = msg
                    .header("Contact")
                    .map(|c| Bytes::copy_from_slice(c.as_bytes()));
                let device = device_of(
                    Bytes::copy_from_slice(aor(&from_uri).as_bytes()),
                    contact.as_ref(),
                )
                .map_err(|e| TranslateError::header("Contact", e))?;
                outcome
                    .changes
                    .push(Change::Insert(super::state::Entry::Message(
                        id,
                        MessageOrigin {
                            side: from,
                            device,
                            recipient: Bytes::copy_from_slice(aor(&to_uri).as_bytes()),
                            conversation: ids,
                        },
                    )));
            }
            outcome.send.push((to, out));
        }
        Content::Imdn { imdn, cpim } => {
            let origin = view.message(&imdn.message_id).filter(|o| o.side == to);
            // Back to the device that sent the message (CPM 2.0 §4.2); with nothing remembered,
            // to the address the far end used.
            let route = origin.as_ref().map(|o| route_to(&o.device));
            let target_uri = route
                .as_ref()
                .map_or(request_uri.clone(), |r| lossy(&r.request_uri).into_owned());
            let mut out = new_leg(msg, &target_uri, rules, env)?;
            rewrite_service_tags(&mut out, to, service, mappings)?;
            if let Some(ac) = route.as_ref().and_then(|r| r.accept_contact.as_deref()) {
                out.remove_header("Accept-Contact");
                out.push_header("Accept-Contact", ac)?;
            }
            if to == Side::Cpm {
                // SD 5.2.1.1: a notification sent as a pager MESSAGE carries the identities of
                // the message it is about; else those of the conversation.
                let ids = origin.as_ref().and_then(|o| o.conversation.clone());
                match ids {
                    Some(ids) => write_ids(&mut out, &ids)?,
                    None => {
                        let (ids, change) = for_simple_contribution(view, key.clone(), env.ids);
                        write_ids(&mut out, &ids)?;
                        outcome.changes.push(change);
                    }
                }
            }
            set_content(&mut out, msg, cpim.as_ref(), target.pager_body, || {
                let id = env.ids.fresh_id();
                let mut c = wrap_in_cpim(msg, &from_uri, &to_uri, Some(&id), env);
                c.content_headers.push((
                    Bytes::from_static(b"Content-Disposition"),
                    Bytes::from_static(b"notification"),
                ));
                c
            })?;
            // Nothing more comes after a display notification or a failure: forget the message.
            // After "delivered", a display notification may still come.
            let last = !matches!(
                imdn.notification,
                Notification::Delivery(DeliveryStatus::Delivered) | Notification::Processing(_)
            );
            if origin.is_some() && last {
                outcome
                    .changes
                    .push(Change::Remove(Key::Message(Bytes::copy_from_slice(
                        &imdn.message_id,
                    ))));
            }
            outcome.send.push((to, out));
        }
    }
    Ok(outcome)
}

#[cfg(test)]
#[path = "pager_tests.rs"]
mod tests;
