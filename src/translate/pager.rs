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

use super::addr::{angle_aor, uri_of};
use super::conversation::for_simple_contribution;
use super::device::{device_parts as device_parts_of, device_texts, route_to};
use super::few::Few;
use super::leg::{
    CONTRIBUTION_ID, CONVERSATION_ID, IN_REPLY_TO_CONTRIBUTION_ID, IdBuffer, LegFields, MAX_ID_LEN,
    RawIds, Role, Tracked, check_id, cpm_service_given, field_role, lossy, new_leg_rewritten,
    role_of, write_ids,
};
use super::state::{Change, Key, Part, Remembered, Side, View};
use super::{Env, Outcome, Reply, TranslateError};
use crate::mapping::{Carriage, HeaderRules, Mappings, Service};
use crate::wire::cpim::{Cpim, CpimSummaryRef, NS_IMDN};
use crate::wire::imdn::{self, DeliveryStatus, Imdn, Notification};
use crate::wire::iscomposing;
use crate::wire::sip::{RequestDraft, SipMessage, Text};
use crate::wire::text::media_type_is as media_is;

/// What a MESSAGE carries. A CPIM body is read for what the translation needs
/// ([`Cpim::summarize_ref_with`]: checked as a full parse would, no header lists built, slices
/// of the request's body).
enum Content<'m> {
    /// A CPIM-wrapped IMDN (RFC 5438 §7.2.1.1), or a bare one.
    Imdn {
        imdn: Box<Imdn>,
        cpim: Option<CpimSummaryRef<'m>>,
    },
    /// isComposing, bare or CPIM-wrapped (RFC 3994 §3.3).
    IsComposing { cpim: Option<CpimSummaryRef<'m>> },
    /// A message: CPIM-wrapped or bare content.
    Message { cpim: Option<CpimSummaryRef<'m>> },
}

/// The header fields the translation reads, each the first of its name, found in one pass
/// over the request (each name read once), and in the same pass what the new leg reads of
/// them ([`LegFields`]).
struct Read<'a> {
    from: Option<&'a str>,
    to: Option<&'a str>,
    content_type: Option<&'a str>,
    /// The first Content-Type value as shared text (when the fields are the codec's own).
    content_type_text: Option<&'a Text>,
    contact: Option<&'a str>,
    asserted_service: Option<&'a str>,
    preferred_service: Option<&'a str>,
    ids: RawIds<'a>,
    /// The fields as [`new_leg_rewritten`] reads them, when it reads them (the codec's own
    /// field list, and `rules` that rename nothing).
    leg: Option<LegFields<'a>>,
}

/// [`Read`] of `msg`, whose new leg follows `rules`.
fn read<'a>(msg: &'a SipMessage, rules: &HeaderRules) -> Read<'a> {
    let mut r = Read {
        from: None,
        to: None,
        content_type: None,
        content_type_text: None,
        contact: None,
        asserted_service: None,
        preferred_service: None,
        ids: RawIds::default(),
        leg: None,
    };
    match msg.fields() {
        Some(fields) if rules.rename.is_empty() => {
            let mut leg = LegFields::new(rules);
            for f in fields {
                let role = field_role(f);
                r.take(role, f.value().as_str(), Some(f.value()));
                leg.take(f, role, rules);
            }
            r.leg = Some(leg);
        }
        Some(fields) => {
            for f in fields {
                r.take(field_role(f), f.value().as_str(), Some(f.value()));
            }
        }
        None => {
            for (name, value) in msg.headers() {
                r.take(role_of(name), value, None);
            }
        }
    }
    r
}

impl<'a> Read<'a> {
    /// Keep `value` when its field's `role` is one the translation reads and the first of its
    /// name. Inlined into [`read`]'s loop: a call a field (14 in the bench's vector) cost more
    /// than the switch it makes.
    #[inline(always)]
    fn take(&mut self, role: Role, value: &'a str, text: Option<&'a Text>) {
        let slot = match role {
            Role::To => &mut self.to,
            Role::From => &mut self.from,
            Role::Contact => &mut self.contact,
            Role::ContentType => {
                if self.content_type.is_none() {
                    self.content_type_text = text;
                }
                &mut self.content_type
            }
            Role::Tracked(Tracked::ConversationId) => &mut self.ids.conversation_id,
            Role::Tracked(Tracked::ContributionId) => &mut self.ids.contribution_id,
            Role::Tracked(Tracked::AssertedService) => &mut self.asserted_service,
            Role::Tracked(Tracked::PreferredService) => &mut self.preferred_service,
            Role::Tracked(Tracked::InReplyTo) => &mut self.ids.in_reply_to,
            Role::AcceptContact | Role::Leg | Role::EndToEnd => return,
        };
        if slot.is_none() {
            *slot = Some(value);
        }
    }
}

fn classify<'m>(
    msg: &'m SipMessage,
    content_type: Option<&str>,
) -> Result<Content<'m>, TranslateError> {
    let ct = content_type.unwrap_or("text/plain").as_bytes();
    let body = msg.body();
    if media_is(ct, "message/cpim") {
        let cpim = Cpim::summarize_ref(body)?;
        let inner = cpim.content_type.unwrap_or_default();
        if media_is(inner, imdn::CONTENT_TYPE) {
            let parsed = Imdn::parse(body.slice_ref(cpim.body))?;
            return Ok(Content::Imdn {
                imdn: Box::new(parsed),
                cpim: Some(cpim),
            });
        }
        if media_is(inner, iscomposing::CONTENT_TYPE) {
            iscomposing::parse(body.slice_ref(cpim.body))?;
            return Ok(Content::IsComposing { cpim: Some(cpim) });
        }
        return Ok(Content::Message { cpim: Some(cpim) });
    }
    if media_is(ct, imdn::CONTENT_TYPE) {
        return Ok(Content::Imdn {
            imdn: Box::new(Imdn::parse(body.clone())?),
            cpim: None,
        });
    }
    if media_is(ct, iscomposing::CONTENT_TYPE) {
        iscomposing::parse(body.clone())?;
        return Ok(Content::IsComposing { cpim: None });
    }
    Ok(Content::Message { cpim: None })
}

/// Wrap a bare content in CPIM (RFC 3862 §2) for a side that wants CPIM, with an
/// `imdn.Message-ID` (RFC 5438 §6.3) so that the CPM side can refer to it, and for a
/// notification `Content-Disposition: notification` (RFC 5438 §7.2.1.1). Written straight into
/// one buffer of its exact size (one allocation): the bytes `Cpim::to_bytes` writes for the
/// same headers (`From`, `To`, `DateTime`, then `NS: imdn <urn:ietf:params:imdn>` and
/// `imdn.Message-ID` as `Cpim::set_ns` adds them to headers that bind no namespace; the tests
/// keep that way as the reference).
fn wrap_in_cpim(
    msg: &SipMessage,
    from_uri: &str,
    to_uri: &str,
    message_id: Option<&[u8]>,
    notification: bool,
    env: &Env<'_>,
) -> Bytes {
    let ct = msg.content_type().unwrap_or("text/plain");
    let id = |b: &'static [u8]| if message_id.is_some() { b } else { b"" };
    let parts: [&[u8]; 16] = [
        b"From: <",
        from_uri.as_bytes(),
        b">\r\nTo: <",
        to_uri.as_bytes(),
        b">\r\nDateTime: ",
        env.datetime.as_bytes(),
        b"\r\n",
        id(b"NS: imdn <"),
        id(NS_IMDN.as_bytes()),
        id(b">\r\nimdn.Message-ID: "),
        message_id.unwrap_or_default(),
        id(b"\r\n"),
        b"\r\nContent-Type: ",
        ct.as_bytes(),
        match notification {
            true => b"\r\nContent-Disposition: notification\r\n\r\n",
            false => b"\r\n\r\n",
        },
        msg.body(),
    ];
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        out.extend_from_slice(p);
    }
    Bytes::from(out)
}

/// Text shared from `b` when it is UTF-8, else a lossy copy.
fn text_of(b: &Bytes) -> Text {
    Text::from_utf8(b.clone()).unwrap_or_else(|b| Text::from(lossy(&b).into_owned()))
}

/// The bytes of [`text_of`]: `b` shared (one reference count) when it is UTF-8.
fn utf8_of(b: &Bytes) -> Bytes {
    // ASCII (the usual Request-URI) is UTF-8: one word-at-a-time test before the full check.
    match b.is_ascii() || std::str::from_utf8(b).is_ok() {
        true => b.clone(),
        false => Bytes::from(String::from_utf8_lossy(b).into_owned()),
    }
}

/// Put `content` on `out` in the form `carriage` says: the CPIM as received (no copy), its
/// content alone, or newly wrapped.
/// `out` is a new leg's request, which has no Content-Type of its own: the one written is
/// appended. `content_type` is the first Content-Type of `incoming` when the caller has it.
fn set_content(
    out: &mut RequestDraft,
    incoming: &SipMessage,
    content_type: Option<&Text>,
    cpim: Option<&CpimSummaryRef<'_>>,
    carriage: Carriage,
    wrap: impl FnOnce() -> Bytes,
) -> Result<(), TranslateError> {
    match (cpim, carriage) {
        (Some(_), Carriage::Cpim) | (None, Carriage::Bare | Carriage::Drop) => {
            match content_type {
                // A field of `incoming`'s own list: it holds no CR or LF (the parser unfolds,
                // the setters check), as the fields the new leg copies.
                Some(ct) => out.push_clean("Content-Type", ct),
                None => {
                    let ct = incoming.header("Content-Type").unwrap_or("text/plain");
                    out.push_checked("Content-Type", ct)?;
                }
            }
            out.set_body(incoming.body().clone());
        }
        (Some(c), Carriage::Bare | Carriage::Drop) => {
            let body = incoming.body();
            let ct = c
                .content_type
                .map_or(Text::from_static("text/plain"), |ct| {
                    text_of(&body.slice_ref(ct))
                });
            out.push_checked("Content-Type", &ct)?;
            out.set_body(body.slice_ref(c.body));
        }
        (None, Carriage::Cpim) => {
            out.push_clean("Content-Type", "message/cpim");
            out.set_body(wrap());
        }
    }
    Ok(())
}

/// What the table keeps of one message, copied once into one buffer ([`IdBuffer`]: one
/// allocation, and the table does not keep the request alive through slices of it): the pair's
/// addresses of record, for a message its identities and Message-ID, and the GRUU and instance
/// id of the device that sent it (CPM 2.0 §4.2; nothing else of its Contact). A
/// [`Remembered`] that asks for nothing yet (the caller sets what is kept).
fn kept<'v>(
    from: Side,
    (from_value, to_value): (&str, &str),
    uris: impl Fn() -> (&'v str, &'v str),
    raw: &RawIds<'_>,
    message_id: Option<&[u8]>,
    (gruu, instance): (Option<&str>, Option<&str>),
) -> Remembered {
    let len = |v: Option<&str>| v.map_or(0, str::len);
    // Not UTF-8: kept apart, as it came (the buffer holds text).
    let utf8 = |b| crate::wire::text::ascii_str(b).map_or_else(|| std::str::from_utf8(b), Ok);
    let (message_text, raw_message_id) = match message_id.map(utf8) {
        None => (None, None),
        Some(Ok(v)) => (Some(v), None),
        Some(Err(_)) => (None, message_id.map(Bytes::copy_from_slice)),
    };
    // An address of record is no longer than the From / To value it is read from.
    let mut ids = IdBuffer::with_capacity(
        from_value.len()
            + to_value.len()
            + len(raw.conversation_id)
            + len(raw.contribution_id)
            + len(raw.in_reply_to)
            + len(message_text)
            + len(gruu)
            + len(instance),
    );
    let end = |ids: &IdBuffer| u32::try_from(ids.len()).unwrap_or(u32::MAX);
    let mut ends = [0u32; Part::COUNT];
    // The usual `<sip:user@host>` values are their addresses of record (no URI read first);
    // others are read from their URIs, as the caller has them (`uris`).
    match angle_aor(from_value).and_then(|f| Some((f, angle_aor(to_value)?))) {
        Some((from_aor, to_aor)) => {
            ids.push(from_aor);
            ends[Part::FromAor as usize] = end(&ids);
            ids.push(to_aor);
        }
        _ => {
            let (from_uri, to_uri) = uris();
            ids.push_aor(from_uri);
            ends[Part::FromAor as usize] = end(&ids);
            ids.push_aor(to_uri);
        }
    }
    ends[Part::ToAor as usize] = end(&ids);
    let mut present = 1 << Part::FromAor as u8 | 1 << Part::ToAor as u8;
    // The other parts in their order, from `Part::ConversationId` on.
    let rest = [
        raw.conversation_id,
        raw.contribution_id,
        raw.in_reply_to,
        message_text,
        gruu,
        instance,
    ];
    for (i, (v, end_of)) in rest
        .into_iter()
        .zip(ends.iter_mut().skip(Part::ConversationId as usize))
        .enumerate()
    {
        if let Some(v) = v {
            ids.push(v);
            present |= 1 << (Part::ConversationId as usize + i);
        }
        *end_of = end(&ids);
    }
    Remembered {
        buf: ids.freeze(),
        ends,
        present,
        raw_message_id,
        from,
        conversation: false,
        message: false,
    }
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
    let fields = read(msg, rules);
    let service = match from {
        Side::Cpm => cpm_service_given(
            msg,
            fields.asserted_service,
            fields.preferred_service,
            mappings,
        )?
        .unwrap_or(Service::Pager),
        // SIMPLE IM names no service beyond +g.oma.sip-im: a MESSAGE is pager mode
        // (docs/interworking-notes.md §1.4).
        Side::Simple => Service::Pager,
    };
    // `let ... else` rather than `ok_or(error)`: the error value `ok_or` builds is dropped on
    // the usual path, an out-of-line drop of a `TranslateError` each (~17 instructions).
    let Some(from_text) = fields.from else {
        return Err(TranslateError::Missing("From"));
    };
    let Some(to_text) = fields.to else {
        return Err(TranslateError::Missing("To"));
    };
    // The URIs, read once when something needs them (a content wrapped anew, an address of
    // record that is not the usual `<sip:user@host>`: [`kept`]).
    let uris_read = std::cell::OnceCell::new();
    let uris = || *uris_read.get_or_init(|| (uri_of(from_text), uri_of(to_text)));
    let Some(request_uri) = msg.request_uri_bytes().map(utf8_of) else {
        return Err(TranslateError::Missing("Request-URI"));
    };
    let content = classify(msg, fields.content_type)?;
    // The pair's addresses alone (isComposing and notifications).
    let pair = || {
        kept(
            from,
            (from_text, to_text),
            uris,
            &RawIds::default(),
            None,
            (None, None),
        )
    };
    let mut outcome = Outcome::default();

    match content {
        Content::IsComposing { cpim } => {
            if target.iscomposing_pager == Carriage::Drop {
                // The side takes no pager isComposing (mappings/content.toml): accept, discard.
                outcome.reply = Some(Reply::OK);
                return Ok(outcome);
            }
            let (mut out, _) = new_leg_rewritten(
                msg,
                rsip::Method::Message,
                request_uri,
                rules,
                to,
                service,
                mappings,
                env,
                fields.leg.as_ref(),
            )?;
            if to == Side::Cpm
                && let Some(state) = view.conversation(&pair().key())
            {
                out.push_checked(CONVERSATION_ID, &lossy(&state.conversation_id))?;
            }
            set_content(
                &mut out,
                msg,
                fields.content_type_text,
                cpim.as_ref(),
                target.iscomposing_pager,
                || {
                    let (from_uri, to_uri) = uris();
                    wrap_in_cpim(msg, from_uri, to_uri, None, false, env)
                },
            )?;
            // The one message, in place (no push: its spill path is out of line).
            outcome.send = Few::from_buf([(to, out.finish())]);
        }
        Content::Message { cpim } => {
            let (mut out, device_parts) = new_leg_rewritten(
                msg,
                rsip::Method::Message,
                request_uri,
                rules,
                to,
                service,
                mappings,
                env,
                fields.leg.as_ref(),
            )?;
            // The identities of a message to SIMPLE IM are remembered.
            let raw = match (to, &cpim) {
                (Side::Simple, Some(_)) => fields.ids,
                _ => RawIds::default(),
            };
            // The Message-ID of a message that asks for notifications is remembered with the
            // device that sent it.
            let message_id = cpim
                .as_ref()
                .filter(|c| c.disposition_requested)
                .and_then(|c| c.imdn_message_id);
            // The device: the leg's rewrite of the Contact found its parts; else the Contact
            // is read for them (its error is given below, after the others).
            let device = match (message_id, fields.contact) {
                (Some(_), Some(text)) => match &device_parts {
                    Some(parts) => Ok(device_texts(text, parts)),
                    None => device_parts_of(text).map(|parts| device_texts(text, &parts)),
                },
                _ => Ok((None, None)),
            };
            let mut kept = kept(
                from,
                (from_text, to_text),
                uris,
                &raw,
                message_id,
                device.as_ref().ok().copied().unwrap_or_default(),
            );
            // To SIMPLE IM, what is kept (the conversation's state, the message's origin) goes
            // to the table as one packed change; to CPM, the conversation's change (with the
            // fresh identities) is a plain one and so is the message's origin.
            let ids = match to {
                Side::Simple => {
                    check_id(CONVERSATION_ID, raw.conversation_id)?;
                    check_id(CONTRIBUTION_ID, raw.contribution_id)?;
                    check_id(IN_REPLY_TO_CONTRIBUTION_ID, raw.in_reply_to)?;
                    kept.conversation =
                        raw.conversation_id.is_some() && raw.contribution_id.is_some();
                    None
                }
                Side::Cpm => {
                    let (ids, change) = for_simple_contribution(view, kept.key(), env.ids);
                    write_ids(&mut out, &ids)?;
                    outcome.changes.push(change);
                    Some(ids)
                }
            };
            // A wrapped bare message gets a fresh Message-ID.
            let fresh_id =
                (cpim.is_none() && target.pager_body == Carriage::Cpim).then(|| env.ids.fresh_id());
            set_content(
                &mut out,
                msg,
                fields.content_type_text,
                cpim.as_ref(),
                target.pager_body,
                || {
                    let (from_uri, to_uri) = uris();
                    wrap_in_cpim(msg, from_uri, to_uri, fresh_id.as_deref(), false, env)
                },
            )?;
            if let Some(id) = message_id {
                if id.is_empty() || id.len() > MAX_ID_LEN {
                    return Err(TranslateError::Header {
                        header: "imdn.Message-ID",
                        reason: format!("must be 1 to {MAX_ID_LEN} characters"),
                    });
                }
                device.map_err(|e| TranslateError::header("Contact", e))?;
                kept.message = true;
            }
            match ids {
                // To CPM: the message's origin with the identities it was given.
                Some(ids) => {
                    if let Some((id, mut origin)) = kept.message() {
                        origin.conversation = Some(ids);
                        outcome
                            .changes
                            .push(Change::Insert(super::state::Entry::Message(
                                id,
                                Box::new(origin),
                            )));
                    }
                }
                None if kept.conversation || kept.message => {
                    outcome.changes.push(Change::Remember(kept));
                }
                None => {}
            }
            // The one message, in place (no push: its spill path is out of line).
            outcome.send = Few::from_buf([(to, out.finish())]);
        }
        Content::Imdn { imdn, cpim } => {
            let origin = view.message(&imdn.message_id).filter(|o| o.side == to);
            // Back to the device that sent the message (CPM 2.0 §4.2); with nothing remembered,
            // to the address the far end used.
            let route = origin.as_ref().map(|o| route_to(&o.device));
            let target_uri = route
                .as_ref()
                .map_or(request_uri, |r| utf8_of(&r.request_uri));
            let (mut out, _) = new_leg_rewritten(
                msg,
                rsip::Method::Message,
                target_uri,
                rules,
                to,
                service,
                mappings,
                env,
                fields.leg.as_ref(),
            )?;
            if let Some(ac) = route.as_ref().and_then(|r| r.accept_contact.as_deref()) {
                out.remove_header("Accept-Contact");
                out.push_checked("Accept-Contact", ac)?;
            }
            if to == Side::Cpm {
                // SD 5.2.1.1: a notification sent as a pager MESSAGE carries the identities of
                // the message it is about; else those of the conversation.
                let ids = origin.as_ref().and_then(|o| o.conversation.clone());
                match ids {
                    Some(ids) => write_ids(&mut out, &ids)?,
                    None => {
                        let (ids, change) = for_simple_contribution(view, pair().key(), env.ids);
                        write_ids(&mut out, &ids)?;
                        outcome.changes.push(change);
                    }
                }
            }
            set_content(
                &mut out,
                msg,
                fields.content_type_text,
                cpim.as_ref(),
                target.pager_body,
                || {
                    let id = env.ids.fresh_id();
                    let (from_uri, to_uri) = uris();
                    wrap_in_cpim(msg, from_uri, to_uri, Some(&id), true, env)
                },
            )?;
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
            // The one message, in place (no push: its spill path is out of line).
            outcome.send = Few::from_buf([(to, out.finish())]);
        }
    }
    Ok(outcome)
}

#[cfg(test)]
#[path = "pager_tests.rs"]
mod tests;
