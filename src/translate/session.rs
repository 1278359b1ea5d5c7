//! Chat sessions (INVITE with an MSRP offer) across the two networks. The gateway is a
//! back-to-back user agent (RFC 7092 §3.1): the INVITE it sends is a new dialog with the gateway
//! as its endpoint (its Contact, its MSRP URI in the SDP), carrying the end-to-end fields of the
//! received one; the dialogs and the two MSRP legs are remembered in the table so that what
//! follows (the answer, BYE, MSRP SENDs) finds the other leg.

use bytes::Bytes;

use super::addr::{aor, uri_of};
use super::conversation::{for_simple_contribution, remember_cpm_contribution};
use super::feature_tags;
use super::leg::{
    conversation_key, cpm_ids, cpm_service, lossy, new_leg, rewrite_service_tags, write_ids,
};
use super::params::{ContactParams, param_name, split_top};
use super::response::answer_with;
use super::sdp::{MsrpEndpoint, answer_role, for_other_leg};
use super::state::{Change, DialogKey, DialogPeer, Entry, MsrpPeer, Side, View};
use super::{Env, Outcome, TranslateError};
use crate::mapping::{Mappings, Service};
use crate::wire::sdp::{MsrpMedia, Sdp, Setup};
use crate::wire::sip::SipMessage;

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

/// Translate an INVITE that arrived from `from`. `out_leg` is the gateway on the other side;
/// `in_session_id` the session-id the gateway will use in its answer on the received leg.
pub fn invite_request(
    msg: &SipMessage,
    from: Side,
    view: &dyn View,
    mappings: &Mappings,
    out_leg: &LocalLeg,
    in_session_id: Bytes,
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
    let from_uri = uri_of(msg.header("From").ok_or(TranslateError::Missing("From"))?).to_string();
    let to_uri = uri_of(msg.header("To").ok_or(TranslateError::Missing("To"))?).to_string();
    let request_uri = msg
        .request_uri()
        .map(|u| lossy(u).into_owned())
        .ok_or(TranslateError::Missing("Request-URI"))?;

    let mut out = new_leg(msg, rsip::Method::Invite, &request_uri, rules, env)?;
    // The dialog's remote target on the new leg is the gateway (RFC 3261 §12.1.2).
    out.remove_header("Contact");
    rewrite_service_tags(&mut out, to, service, mappings)?;
    out.push_header("Contact", &gateway_contact(out_leg, to, service, mappings))?;
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
    let out_call_id = Bytes::copy_from_slice(
        out.call_id()
            .ok_or(TranslateError::Missing("Call-ID"))?
            .as_bytes(),
    );
    let in_call_id = Bytes::copy_from_slice(in_call_id.as_bytes());
    let out_session = out_leg.msrp.session_id.clone();
    outcome.changes.extend([
        Change::Insert(Entry::Dialog(
            DialogKey {
                side: from,
                call_id: in_call_id.clone(),
            },
            DialogPeer {
                call_id: out_call_id.clone(),
                conversation: conversation.clone(),
                msrp_session: Some(in_session_id.clone()),
            },
        )),
        Change::Insert(Entry::Dialog(
            DialogKey {
                side: to,
                call_id: out_call_id.clone(),
            },
            DialogPeer {
                call_id: in_call_id.clone(),
                conversation,
                msrp_session: Some(out_session.clone()),
            },
        )),
        Change::Insert(Entry::Msrp(
            in_session_id.clone(),
            MsrpPeer {
                side: from,
                peer_session: out_session.clone(),
                call_id: in_call_id,
            },
        )),
        Change::Insert(Entry::Msrp(
            out_session,
            MsrpPeer {
                side: to,
                peer_session: in_session_id,
                call_id: out_call_id,
            },
        )),
    ]);
    outcome.send.push((to, out));
    Ok(SessionOffer {
        outcome,
        received_media,
        service,
    })
}

/// The gateway's 2xx to the INVITE it received from `caller`, for the far side's 2xx with its
/// SDP answer: the gateway's Contact and MSRP endpoint on the caller's leg, the role that
/// answers the caller's (RFC 6135 §4.2), the caller side's content types. Also returns the far
/// side's MSRP stream, whose `a=path` the node connects to (or awaits) on the other leg.
#[allow(clippy::too_many_arguments)]
pub fn invite_answer(
    request: &SipMessage,
    far: &SipMessage,
    caller: Side,
    in_leg: &LocalLeg,
    offered_setup: Option<Setup>,
    service: Service,
    to_tag: Option<&str>,
    mappings: &Mappings,
    env: &mut Env<'_>,
) -> Result<(SipMessage, MsrpMedia), TranslateError> {
    let far_sdp = sdp_of(far)?;
    let target = match caller {
        Side::Cpm => &mappings.cpm,
        Side::Simple => &mappings.simple,
    };
    let mut out = answer_with(request, far, to_tag, env)?;
    out.push_header(
        "Contact",
        &gateway_contact(in_leg, caller, service, mappings),
    )?;
    let (answer, far_media) =
        for_other_leg(&far_sdp, &in_leg.msrp, answer_role(offered_setup), target)?;
    out.set_body_with_type(Some("application/sdp"), answer.to_bytes())?;
    Ok((out, far_media))
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
