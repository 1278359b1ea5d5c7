//! What every request the gateway sends on a new leg has in common, whatever it carries: the
//! fields the gateway writes itself, the end-to-end fields copied by the direction's rules, the
//! service identification, and the CPM conversation identities (CPM 2.0 SD 5.2.1.1).

use bytes::Bytes;

use super::addr::{with_new_tag, without_tag, write_without_tag_of};
use super::device::DeviceParts;
use super::feature_tags;
use super::params::{split_ascii, trim};
use super::state::{ConversationIds, ConversationKey, Side};
use super::{Env, TranslateError};
use crate::mapping::{HeaderRules, Mappings, Service};
use crate::wire::frozen::Scratch;
use crate::wire::sip::{
    Field, PushHeader, RequestDraft, SipMessage, Text, check_value, known_names,
};
use crate::wire::text;

/// Header fields that belong to one hop or one leg and are never copied to the other side:
/// routing and transaction fields the node writes itself (RFC 3261 §16.6, §8.1.1), framing,
/// credentials of the other network, and IMS fields local to one operator's network (3GPP
/// TS 24.229 §5.2.6.3: P-Charging-*, P-Visited-Network-ID are removed at the network border).
pub(crate) const LEG_HEADERS: [&str; 17] = [
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

/// Bit `n` set when a name in [`LEG_HEADERS`] is `n` bytes long (all are under 64).
const LEG_LENGTHS: u64 = {
    let mut mask = 0u64;
    let mut i = 0;
    while i < LEG_HEADERS.len() {
        mask |= 1 << LEG_HEADERS[i].len();
        i += 1;
    }
    mask
};

/// Is `name` one of [`LEG_HEADERS`] (ASCII case ignored)? Most names are ruled out by their
/// length alone.
fn is_leg_header(name: &str) -> bool {
    name.len() < 64
        && LEG_LENGTHS & (1 << name.len()) != 0
        && LEG_HEADERS.iter().any(|h| same_name(h, name))
}

/// ASCII case-insensitive equality of two header names, the cheap tests first.
#[inline]
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.as_bytes().first().map(u8::to_ascii_lowercase)
            == b.as_bytes().first().map(u8::to_ascii_lowercase)
        && a.eq_ignore_ascii_case(b)
}

/// The CPM conversation header fields (CPM 2.0 SD 5.2.1.1).
pub const CONVERSATION_ID: &str = "Conversation-ID";
/// See [`CONVERSATION_ID`].
pub const CONTRIBUTION_ID: &str = "Contribution-ID";
/// See [`CONVERSATION_ID`].
pub const IN_REPLY_TO_CONTRIBUTION_ID: &str = "InReplyTo-Contribution-ID";

pub(crate) const P_ASSERTED_SERVICE: &str = "P-Asserted-Service";
pub(crate) const P_PREFERRED_SERVICE: &str = "P-Preferred-Service";

/// Longest conversation identity accepted: they are UUIDs in practice (36 characters); the bound
/// keeps a hostile value out of the table.
pub const MAX_ID_LEN: usize = 256;

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

/// [`cpm_service`] of a request whose first `P-Asserted-Service` and `P-Preferred-Service`
/// values the caller has read: decided by them alone when the one that counts names a URN
/// (the usual case), else by [`cpm_service`].
pub(crate) fn cpm_service_given(
    msg: &SipMessage,
    asserted: Option<&str>,
    preferred: Option<&str>,
    mappings: &Mappings,
) -> Result<Option<Service>, TranslateError> {
    let first = asserted.or(preferred);
    // The usual value: one ICSI as the mappings write it. No ICSI has a comma or white space
    // (checked at load), so the value is its own first Service-ID: the list is not split.
    if let Some(s) = first.and_then(|v| mappings.service_by_icsi(v)) {
        return Ok(Some(s));
    }
    let first_urn = first.and_then(|v| split_ascii(v, b',').map(trim).find(|u| !u.is_empty()));
    match first_urn {
        Some(urn) => match mappings.service_by_icsi(urn) {
            Some(s) => Ok(Some(s)),
            None => Err(TranslateError::UnknownService(urn.to_string())),
        },
        None => cpm_service(msg, mappings),
    }
}

pub(crate) fn has_icsi_ref(value: &str) -> bool {
    value
        .to_ascii_lowercase()
        .contains(&feature_tags::ICSI_REF.to_ascii_lowercase())
}

/// A conversation identity header, bounded.
pub(crate) fn id_header(
    msg: &SipMessage,
    name: &'static str,
) -> Result<Option<Bytes>, TranslateError> {
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

/// The identity header values of a request as they are, unchecked.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RawIds<'a> {
    pub conversation_id: Option<&'a str>,
    pub contribution_id: Option<&'a str>,
    pub in_reply_to: Option<&'a str>,
}

/// The bound on an identity ([`id_header`]'s check, without the copy).
#[inline]
pub(crate) fn check_id(name: &'static str, v: Option<&str>) -> Result<(), TranslateError> {
    match v {
        Some(v) if v.is_empty() || v.len() > MAX_ID_LEN => Err(id_length_error(name)),
        _ => Ok(()),
    }
}

#[cold]
#[inline(never)]
fn id_length_error(name: &'static str) -> TranslateError {
    TranslateError::Header {
        header: name,
        reason: format!("must be 1 to {MAX_ID_LEN} characters"),
    }
}

/// Identities and addresses the table keeps from one message, copied into one buffer: one
/// allocation ([`Scratch`] then [`Scratch::freeze`]: the bytes and their reference count in
/// one block), and the table does not keep the message alive through slices of it. Every
/// value pushed is a range of the frozen buffer.
pub(crate) struct IdBuffer {
    text: Scratch,
}

impl IdBuffer {
    pub fn with_capacity(n: usize) -> Self {
        IdBuffer {
            text: Scratch::with_capacity(n),
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// Append `s`; where it is.
    pub fn push(&mut self, s: &str) -> std::ops::Range<usize> {
        let at = self.text.len();
        self.text.push_str(s);
        at..self.text.len()
    }

    /// Append the address of record of `uri` ([`aor`](super::addr::aor)); where it is.
    pub fn push_aor(&mut self, uri: &str) -> std::ops::Range<usize> {
        let at = self.text.len();
        super::addr::aor_into(uri, &mut self.text);
        at..self.text.len()
    }

    /// The buffer, to slice the ranges from.
    pub fn freeze(self) -> Bytes {
        self.text.freeze()
    }
}

/// The identities a CPM request carries, when it carries the two that are required together.
pub(crate) fn cpm_ids(msg: &SipMessage) -> Result<Option<ConversationIds>, TranslateError> {
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

/// Write the identities on `out`, shared (a reference count each, no copy; a lossy copy of one
/// that is not UTF-8), checked as `push_header` checks them.
pub(crate) fn write_ids(
    out: &mut impl PushHeader,
    ids: &ConversationIds,
) -> Result<(), TranslateError> {
    out.push_text(CONVERSATION_ID, id_text(ids.conversation_id.clone()))?;
    out.push_text(CONTRIBUTION_ID, id_text(ids.contribution_id.clone()))?;
    if let Some(r) = &ids.in_reply_to {
        out.push_text(IN_REPLY_TO_CONTRIBUTION_ID, id_text(r.clone()))?;
    }
    Ok(())
}

pub(crate) fn lossy(b: &[u8]) -> std::borrow::Cow<'_, str> {
    // The check alone first: the lossy reader's chunking costs more on text that is valid.
    match std::str::from_utf8(b) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(b),
    }
}

/// The pair of users of a request, the CPM user first.
pub(crate) fn conversation_key(from: Side, from_aor: &str, to_aor: &str) -> ConversationKey {
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
pub(crate) fn new_leg(
    incoming: &SipMessage,
    method: rsip::Method,
    request_uri: &str,
    rules: &HeaderRules,
    env: &mut Env<'_>,
) -> Result<SipMessage, TranslateError> {
    new_leg_shared(
        incoming,
        method,
        Bytes::copy_from_slice(request_uri.as_bytes()),
        rules,
        env,
    )
}

/// An identity from an [`IdSource`](super::conversation::IdSource) as header text (shared;
/// a lossy copy in the unlikely case it is not UTF-8).
pub(crate) fn id_text(id: Bytes) -> Text {
    Text::from_utf8(id).unwrap_or_else(|id| Text::from(lossy(&id).into_owned()))
}

/// [`new_leg`] with the Request-URI shared: the values of the new leg are shared with
/// `incoming` (To without a tag, the end-to-end fields), static (Max-Forwards, CSeq) or the
/// fresh Call-ID as it is; From with its new tag is the one allocation.
pub(crate) fn new_leg_shared(
    incoming: &SipMessage,
    method: rsip::Method,
    request_uri: Bytes,
    rules: &HeaderRules,
    env: &mut Env<'_>,
) -> Result<SipMessage, TranslateError> {
    let from = incoming
        .header_text("From")
        .ok_or(TranslateError::Missing("From"))?;
    let to = incoming
        .header_text("To")
        .ok_or(TranslateError::Missing("To"))?;
    let mut out = SipMessage::request_shared(method, request_uri)?;
    out.push_header_text("Max-Forwards", Text::from_static("70"))?;
    let tag = env.ids.fresh_id();
    let from = with_new_tag(&from, &lossy(&tag)).map_err(|e| TranslateError::header("From", e))?;
    out.push_header_text("From", from)?;
    let to = without_tag(&to).map_err(|e| TranslateError::header("To", e))?;
    out.push_header_text("To", to)?;
    out.push_header_text("Call-ID", id_text(env.ids.fresh_id()))?;
    let cseq = match method {
        rsip::Method::Message => "1 MESSAGE",
        rsip::Method::Invite => "1 INVITE",
        _ => return Err(TranslateError::Missing("a method that opens a leg")),
    };
    out.push_header_text("CSeq", Text::from_static(cseq))?;
    copy_end_to_end(&mut out, incoming, rules, &[])?;
    Ok(out)
}

/// Contact (and, as many again, Accept-Contact) values [`new_leg_rewritten`] rewrites into its
/// buffer; a request with more goes the way of [`rewrite_service_tags`].
const MAX_BUFFERED_CONTACTS: usize = 8;

/// End-to-end fields [`new_leg_rewritten`] copies in one pass; a request with more goes the
/// way of [`rewrite_service_tags`].
const MAX_COPIED: usize = 32;

/// What a header field of the incoming request is to the new leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    From,
    To,
    Contact,
    AcceptContact,
    /// One of [`LEG_HEADERS`]: never copied.
    Leg,
    /// `Content-Type`, one of [`LEG_HEADERS`] (never copied) that a pager translation reads.
    ContentType,
    /// Copied unless the direction's rules drop it.
    EndToEnd,
    /// An end-to-end field (copied unless dropped) that a pager translation reads.
    Tracked(Tracked),
}

/// The end-to-end fields a pager translation reads ([`Role::Tracked`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tracked {
    ConversationId,
    ContributionId,
    InReplyTo,
    AssertedService,
    PreferredService,
}

/// A name [`role_of`] knows, as the words a name of its length is compared with
/// ([`name_words`]): its bytes in lower case, and where they are ASCII letters (the bits
/// `0x20` a name's byte gains there to compare it case-insensitively, RFC 3261 §7.3.1; other
/// bytes compare exactly: `-` | `0x20` would let CR through).
#[derive(Clone, Copy)]
struct Known {
    words: [u64; 4],
    fold: [u64; 4],
}

impl Known {
    /// Made at compile time (`const { Known::new(..) }`): no work at run time.
    const fn new(name: &str) -> Known {
        let b = name.as_bytes();
        let mut lower = [0u8; 32];
        let mut fold = [0u8; 32];
        let mut i = 0;
        while i < b.len() && i < 32 {
            lower[i] = b[i].to_ascii_lowercase();
            fold[i] = if b[i].is_ascii_alphabetic() { 0x20 } else { 0 };
            i += 1;
        }
        let n = if b.len() < 32 { b.len() } else { 32 };
        let (lower, fold) = (lower.split_at(n).0, fold.split_at(n).0);
        Known {
            words: name_words(lower),
            fold: name_words(fold),
        }
    }

    /// Whether a name of the same length, read as `w`, is this one (ASCII case ignored).
    #[inline(always)]
    const fn is(&self, w: &[u64; 4]) -> bool {
        let [a, b, c, d] = *w;
        let [fa, fb, fc, fd] = self.fold;
        let [ka, kb, kc, kd] = self.words;
        ((a | fa) ^ ka) | ((b | fb) ^ kb) | ((c | fc) ^ kc) | ((d | fd) ^ kd) == 0
    }
}

/// Eight bytes of `b` from `at` (little-endian), `0` past the end.
#[inline(always)]
const fn word_at(b: &[u8], at: usize) -> u64 {
    match b.split_at_checked(at) {
        Some((_, rest)) => match rest.first_chunk::<8>() {
            Some(w) => u64::from_le_bytes(*w),
            None => 0,
        },
        None => 0,
    }
}

/// The bytes of a name of up to 32 as four words, every byte in at least one of them, at
/// places that depend on its length alone (so that two names of one length compare word for
/// word): under 8 bytes, two overlapping halves packed in the first word; up to 16, the first
/// and last eight; longer, the first 24 and the last eight. Longer names: zeros.
#[inline(always)]
const fn name_words(b: &[u8]) -> [u64; 4] {
    let n = b.len();
    if n >= 8 {
        let last = match b.last_chunk::<8>() {
            Some(w) => u64::from_le_bytes(*w),
            None => 0,
        };
        if n <= 16 {
            return [word_at(b, 0), last, 0, 0];
        }
        if n <= 32 {
            return [word_at(b, 0), word_at(b, 8), word_at(b, 16), last];
        }
        return [0; 4];
    }
    let packed = match (b.first_chunk::<4>(), b.last_chunk::<4>()) {
        (Some(h), Some(t)) => u32::from_le_bytes(*h) as u64 | (u32::from_le_bytes(*t) as u64) << 32,
        _ => match (b.first_chunk::<2>(), b.last_chunk::<2>()) {
            (Some(h), Some(t)) => {
                u16::from_le_bytes(*h) as u64 | (u16::from_le_bytes(*t) as u64) << 16
            }
            _ => match b.first() {
                Some(c) => *c as u64,
                None => 0,
            },
        },
    };
    [packed, 0, 0, 0]
}

/// The [`Role`] of a field named `name` (ASCII case ignored): its length picks the one to
/// three names it can be (the [`LEG_HEADERS`] spelled out; a unit test holds them equal),
/// each compared as words ([`Known`]: no byte loop, no call, whatever the case of `name`).
/// Always inlined into the loops over the fields (a call a field cost more than the switch).
#[inline(always)]
pub(crate) const fn role_of(name: &str) -> Role {
    // The words read in each arm, where the length is a constant: no test of it left.
    macro_rules! is {
        ($name:expr) => {
            const { Known::new($name) }.is(&name_words(name.as_bytes()))
        };
    }
    let leg = match name.len() {
        2 if is!("To") => return Role::To,
        4 if is!("From") => return Role::From,
        7 if is!("Contact") => return Role::Contact,
        12 if is!("Content-Type") => return Role::ContentType,
        14 if is!("Accept-Contact") => return Role::AcceptContact,
        15 if is!(CONVERSATION_ID) => return Role::Tracked(Tracked::ConversationId),
        15 if is!(CONTRIBUTION_ID) => return Role::Tracked(Tracked::ContributionId),
        18 if is!(P_ASSERTED_SERVICE) => return Role::Tracked(Tracked::AssertedService),
        19 if is!(P_PREFERRED_SERVICE) => return Role::Tracked(Tracked::PreferredService),
        25 if is!(IN_REPLY_TO_CONTRIBUTION_ID) => return Role::Tracked(Tracked::InReplyTo),
        3 => is!("Via"),
        4 => is!("CSeq") || is!("Path"),
        5 => is!("Route"),
        7 => is!("Call-ID"),
        12 => is!("Max-Forwards") || is!("Record-Route"),
        13 => is!("Service-Route") || is!("Authorization"),
        14 => is!("Content-Length"),
        17 => is!("P-Charging-Vector"),
        19 => is!("Proxy-Authorization"),
        20 => is!("P-Visited-Network-ID"),
        29 => is!("P-Charging-Function-Addresses"),
        _ => false,
    };
    if leg { Role::Leg } else { Role::EndToEnd }
}

/// The [`Role`] of each of the names the codec knows ([`known_names`]), by index: made at
/// compile time by [`role_of`].
const ROLE_OF_KNOWN: [Role; known_names().len()] = {
    let names = known_names();
    let mut roles = [Role::EndToEnd; known_names().len()];
    let mut i = 0;
    while i < names.len() {
        roles[i] = role_of(names[i]);
        i += 1;
    }
    roles
};

/// [`role_of`] the name of `f`: looked up by index when the codec knows the name (every name
/// [`role_of`] tells apart is one of them), else read.
#[inline(always)]
pub(crate) fn field_role(f: &Field) -> Role {
    match f.known().and_then(|i| ROLE_OF_KNOWN.get(usize::from(i))) {
        Some(role) => *role,
        None => role_of(f.name()),
    }
}

/// Bit of a [`Role`] that names one field (Contact, Accept-Contact, a tracked one) in
/// [`LegFields`]'s set of dropped ones; `0` for the others.
#[inline(always)]
const fn role_bit(role: Role) -> u8 {
    match role {
        Role::Contact => 1,
        Role::AcceptContact => 2,
        Role::Tracked(t) => 4 << t as u8,
        _ => 0,
    }
}

/// Bit `n` set when a name the rules drop is `n` bytes long (`63`: that long or longer).
fn length_mask(names: &[String]) -> u64 {
    names.iter().fold(0u64, |m, n| m | 1 << n.len().min(63))
}

/// The [`role_bit`]s of the names the rules drop: a field whose name has one is dropped when
/// its bit is set (two names are equal, ASCII case ignored, only when their roles are), no
/// name compared.
fn dropped_roles(names: &[String]) -> u8 {
    names.iter().fold(0, |m, n| m | role_bit(role_of(n)))
}

/// What [`LegFields`] reads of a direction's dropped names, made once per [`HeaderRules`]
/// (kept in them, `HeaderRules::drop_index`: the rules do not change once loaded), not once
/// per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DropIndex {
    /// Bit `n` set when a name the rules drop is `n` bytes long.
    lengths: u64,
    /// The [`role_bit`]s of the names the rules drop.
    roles: u8,
}

impl DropIndex {
    /// The index of `rules`, made on its first use.
    #[inline]
    fn of(rules: &HeaderRules) -> DropIndex {
        *rules.drop_index.get_or_init(|| DropIndex {
            lengths: length_mask(&rules.drop),
            roles: dropped_roles(&rules.drop),
        })
    }
}

/// The fields of an incoming request as [`new_leg_rewritten`] reads them, each by its
/// [`Role`]: From and To (the first of each), which fields are Contact and Accept-Contact
/// values, which are end-to-end fields to copy (the rules' drops left out), each a bit set of
/// field indices: small (~90 bytes, where arrays of the fields' references were ~450, which
/// the caller's pass moved twice). Made by [`LegFields::take`] of every field in order, by
/// [`new_leg_rewritten`] itself or by a caller that reads the fields for itself in the same
/// pass (`translate::pager`: each name read once).
pub(crate) struct LegFields<'a> {
    from: Option<&'a Text>,
    to: Option<&'a Text>,
    /// Bit `i` set when field `i` is a Contact value.
    contacts: u64,
    /// Bit `i` set when field `i` is an Accept-Contact value.
    accepts: u64,
    /// Bit `i` set when field `i` is copied to the new leg.
    copies: u64,
    n_contacts: usize,
    n_accepts: usize,
    n_copies: usize,
    /// Bytes of the Contact and Accept-Contact values.
    values_len: usize,
    /// The index of the next field (how many were read).
    index: usize,
    /// The names the rules drop, by length and by role.
    dropped: DropIndex,
}

/// The indices of the bits set in `mask`, lowest first.
fn bits(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let i = mask.trailing_zeros();
        mask &= mask.wrapping_sub(1);
        (i < 64).then_some(i as usize)
    })
}

impl<'a> LegFields<'a> {
    /// Nothing read yet, under the direction's `rules` (which rename nothing).
    #[inline]
    pub(crate) fn new(rules: &HeaderRules) -> Self {
        LegFields {
            from: None,
            to: None,
            contacts: 0,
            accepts: 0,
            copies: 0,
            n_contacts: 0,
            n_accepts: 0,
            n_copies: 0,
            values_len: 0,
            index: 0,
            dropped: DropIndex::of(rules),
        }
    }

    /// The next field of the request, whose role is `role` ([`role_of`] its name). Nothing
    /// but a bit and a count per field: whether there were too many of a kind is decided once,
    /// at the end ([`LegFields::overflow`]).
    #[inline(always)]
    pub(crate) fn take(&mut self, f: &'a crate::wire::sip::Field, role: Role, rules: &HeaderRules) {
        // Past the 64th field the bits wrap: the fields are then read field by field.
        let bit = 1u64 << (self.index & 63);
        self.index += 1;
        match role {
            Role::From => self.from = self.from.or(Some(f.value())),
            Role::To => self.to = self.to.or(Some(f.value())),
            Role::Leg | Role::ContentType => {}
            _ if self.drops(role, f, rules) => {}
            Role::EndToEnd | Role::Tracked(_) => {
                self.copies |= bit;
                self.n_copies += 1;
            }
            Role::Contact => {
                self.contacts |= bit;
                self.n_contacts += 1;
                self.values_len += f.value().len();
            }
            Role::AcceptContact => {
                self.accepts |= bit;
                self.n_accepts += 1;
                self.values_len += f.value().len();
            }
        }
    }

    /// Whether the rules drop the field `f`, whose role is `role`: for a name with a
    /// [`role_bit`] its role tested (the names of one such role are one name, of one length),
    /// else a name of a length they drop looked up.
    #[inline(always)]
    fn drops(&self, role: Role, f: &crate::wire::sip::Field, rules: &HeaderRules) -> bool {
        match role_bit(role) {
            0 => {
                let name = f.name();
                self.dropped.lengths & (1 << name.len().min(63)) != 0 && rules.drops(name)
            }
            bit => self.dropped.roles & bit != 0,
        }
    }

    /// More Contacts, Accept-Contacts or copies than [`new_leg_rewritten`] has room for, or
    /// more than 64 fields.
    fn overflow(&self) -> bool {
        self.n_contacts > MAX_BUFFERED_CONTACTS
            || self.n_accepts > MAX_BUFFERED_CONTACTS
            || self.n_copies > MAX_COPIED
            || self.index > 64
    }
}

/// [`new_leg_shared`] then [`rewrite_service_tags`] (same result, same errors in the same
/// order), in one pass over the fields of `incoming`: each field's name is read once to know
/// its [`Role`], the end-to-end fields are copied as they come (shared), From, To and the
/// service identification values are picked on the way. Every value the gateway writes (From
/// with its new tag, the rewritten Contact and Accept-Contact values, P-Asserted-Service) goes
/// into one buffer: one allocation for all of them. A direction whose rules rename fields,
/// a request with more than [`MAX_BUFFERED_CONTACTS`] of either, or one held in rsip's model,
/// is built field by field instead.
///
/// With the new leg, where the first `Contact` value of `incoming` names the sending device
/// ([`DeviceParts`]) when the rewrite read it (a Contact rewritten for the SIMPLE side).
///
/// `read`: the fields of `incoming` as the caller read them ([`LegFields::take`] of each of
/// them in order, under `rules`), when it did; only used when `incoming` has its codec's
/// field list and `rules` rename nothing (the way the fields are read here).
#[allow(clippy::too_many_arguments)]
pub(crate) fn new_leg_rewritten(
    incoming: &SipMessage,
    method: rsip::Method,
    request_uri: Bytes,
    rules: &HeaderRules,
    to_side: Side,
    service: Service,
    mappings: &Mappings,
    env: &mut Env<'_>,
    read: Option<&LegFields<'_>>,
) -> Result<(RequestDraft, Option<DeviceParts>), TranslateError> {
    let field_by_field = |uri: Bytes, env: &mut Env<'_>| {
        new_leg_shared(incoming, method, uri, rules, env).and_then(|mut out| {
            rewrite_service_tags(&mut out, to_side, service, mappings)?;
            Ok((RequestDraft::of_message(&out)?, None))
        })
    };
    let Some(fields) = incoming.fields().filter(|_| rules.rename.is_empty()) else {
        return field_by_field(request_uri, env);
    };
    // The fields as the caller read them, or read here.
    let own;
    let read = match read {
        Some(read) => read,
        None => {
            let mut r = LegFields::new(rules);
            for f in fields {
                r.take(f, field_role(f), rules);
            }
            own = r;
            &own
        }
    };
    let LegFields {
        from,
        to,
        contacts,
        accepts,
        copies,
        n_contacts,
        n_accepts,
        values_len,
        ..
    } = *read;
    let overflow = read.overflow();
    // Max-Forwards, From, To, Call-ID, CSeq (~130 bytes with the two fresh ids), the copies,
    // the service identification with room for the tags they gain, the ICSI, and room for what
    // the caller adds (Content-Type; to CPM the conversation identities).
    let icsi = match to_side {
        Side::Cpm => mappings.service(service).cpm_icsi.as_str(),
        Side::Simple => "",
    };
    let copied_len: usize = bits(copies)
        .filter_map(|i| fields.get(i))
        .map(|f| f.name().len() + f.value().len() + 4)
        .sum();
    // No more than needed: the bytes allocated count towards the allocator's periodic cache
    // sweep (jemalloc's tcache GC).
    let for_caller = match to_side {
        Side::Cpm => 224,
        Side::Simple => 48,
    };
    // A Contact / Accept-Contact line's name, and what its value gains: to SIMPLE IM a short
    // tag for the ICSI the value loses, to CPM the ICSI.
    let per_value = match to_side {
        Side::Cpm => icsi.len() + 40,
        Side::Simple => 40,
    };
    let room = 140
        + from.map_or(0, |f| f.len())
        + to.map_or(0, |t| t.len())
        + copied_len
        + values_len
        + per_value * (n_contacts + n_accepts)
        + icsi.len()
        + for_caller;
    let mut out = match RequestDraft::new(method, request_uri, room) {
        Ok(out) => out,
        Err(e) => {
            // The errors of the field-by-field way, in its order.
            incoming
                .header("From")
                .ok_or(TranslateError::Missing("From"))?;
            incoming.header("To").ok_or(TranslateError::Missing("To"))?;
            return Err(e.into());
        }
    };
    if overflow {
        let uri = out.uri().clone();
        drop(out);
        return field_by_field(uri, env);
    }
    let cseq = match method {
        rsip::Method::Message => Some("CSeq: 1 MESSAGE\r\n"),
        rsip::Method::Invite => Some("CSeq: 1 INVITE\r\n"),
        _ => None,
    };
    // The fields are written in their order, each value checked in the order of the
    // field-by-field way (a failed draft is dropped).
    // `let ... else`: an `ok_or(error)` would build and drop an error value on the usual path.
    let Some(from) = from else {
        return Err(TranslateError::Missing("From"));
    };
    let Some(to) = to else {
        return Err(TranslateError::Missing("To"));
    };
    out.push_line("Max-Forwards: 70\r\n");
    // From with its fresh tag, and the fresh Call-ID, written in place.
    let from_at = out.begin_value("From");
    write_without_tag_of(from, out.value_text()).map_err(|e| TranslateError::header("From", e))?;
    out.value_text().push_str(";tag=");
    let tag_at = out.value_text().len();
    env.ids.fresh_id_into(out.value_text());
    // Values made of pieces of the request's fields and of the mappings (validated at load)
    // hold no CR or LF; a fresh id is checked.
    let tag_clean = text::find_byte2(b'\r', b'\n', out.value_at(tag_at).as_bytes()).is_none();
    if tag_clean {
        out.end_value(from_at);
    }
    let to_at = out.begin_value("To");
    write_without_tag_of(to, out.value_text()).map_err(|e| TranslateError::header("To", e))?;
    out.end_value(to_at);
    let call_id_at = out.begin_value("Call-ID");
    env.ids.fresh_id_into(out.value_text());
    // The Call-ID's error is given here, the From tag's below, where the field-by-field way
    // gives them.
    check_value("Call-ID", out.value_at(call_id_at))?;
    out.end_value(call_id_at);
    let Some(cseq) = cseq else {
        return Err(TranslateError::Missing("a method that opens a leg"));
    };
    out.push_line(cseq);
    for f in bits(copies).filter_map(|i| fields.get(i)) {
        out.push_field(f);
    }

    let mut device = None;
    let mut memo = feature_tags::IcsiMemo::default();
    let value = |i: usize| fields.get(i).map(|f| f.value());
    let all = bits(contacts)
        .filter_map(|i| value(i).map(|v| ("Contact", v)))
        .chain(bits(accepts).filter_map(|i| value(i).map(|v| ("Accept-Contact", v))));
    for (i, (name, v)) in all.enumerate() {
        let err = |e| TranslateError::header(name, e);
        let at = out.begin_value(name);
        match to_side {
            Side::Simple => {
                // Rewritten in one pass (no separate `to_simple_keeps` reading first: same
                // errors).
                let first_contact = i == 0 && n_contacts > 0;
                let mut parts = DeviceParts::default();
                // The first Contact: the sending device read on the way.
                let device_parts = first_contact.then_some(&mut parts);
                feature_tags::to_simple_into_with(
                    v,
                    mappings,
                    out.value_text(),
                    device_parts,
                    &mut memo,
                )
                .map_err(err)?;
                // A value the rewrite gives back byte for byte names no device of its own
                // (RFC 3840 §9: no +g.3gpp.icsi-ref to replace).
                if first_contact && out.value_at(at) != v.as_str() {
                    device = Some(parts);
                }
            }
            Side::Cpm => {
                feature_tags::to_cpm_into(v, service, mappings, out.value_text()).map_err(err)?;
            }
        }
        out.end_value(at);
    }
    if !tag_clean {
        // The error the check gives (the Call-ID's was given above): the From value, with
        // its tag, runs to the end of what was written.
        check_value("From", out.value_at(from_at))?;
    }
    if to_side == Side::Cpm {
        // RFC 6050 §4: the network asserts the service; the CPM side expects its ICSI.
        out.push_clean(P_ASSERTED_SERVICE, icsi);
    }
    Ok((out, device))
}

/// Copy the end-to-end header fields of `incoming` to `out` by the direction's rules: the
/// fields of one leg ([`LEG_HEADERS`]) and `also_leg` stay behind, dropped ones too, renamed
/// ones change name.
pub(crate) fn copy_end_to_end(
    out: &mut SipMessage,
    incoming: &SipMessage,
    rules: &HeaderRules,
    also_leg: &[&str],
) -> Result<(), TranslateError> {
    // Lengths of the names the rules drop or rename: most names are ruled out by it alone.
    let lengths = |names: &mut dyn Iterator<Item = &String>| {
        names.fold(0u64, |m, n| m | 1 << n.len().min(63))
    };
    let dropped = lengths(&mut rules.drop.iter());
    let renamed = lengths(&mut rules.rename.iter().map(|(old, _)| old));
    let may = |mask: u64, name: &str| mask & (1 << name.len().min(63)) != 0;
    out.copy_headers(incoming, |name| {
        let leg = is_leg_header(name) || also_leg.iter().any(|h| same_name(h, name));
        if leg || (may(dropped, name) && rules.drops(name)) {
            return None;
        }
        if !may(renamed, name) {
            return Some(name);
        }
        Some(rules.renamed(name).unwrap_or(name))
    })?;
    Ok(())
}

/// Rewrite `Contact` and `Accept-Contact` of a request going to `to`: they move to the end,
/// Contact first, each value rewritten (shared when nothing changes).
pub(crate) fn rewrite_service_tags(
    out: &mut SipMessage,
    to: Side,
    service: Service,
    mappings: &Mappings,
) -> Result<(), TranslateError> {
    for name in ["Contact", "Accept-Contact"] {
        out.rewrite_to_end(name, |v| {
            match to {
                Side::Simple => feature_tags::to_simple_text(v, mappings),
                Side::Cpm => feature_tags::to_cpm(v, service, mappings).map(Text::from),
            }
            .map_err(|e| TranslateError::header(name, e))
        })?;
    }
    if to == Side::Cpm {
        // RFC 6050 §4: the network asserts the service; the CPM side expects its ICSI.
        out.push_header(P_ASSERTED_SERVICE, &mappings.service(service).cpm_icsi)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Millis;
    use crate::translate::conversation::IdSource;
    use crate::wire::sip::{Limits, parse_datagram};

    struct Counter(u32);
    impl IdSource for Counter {
        fn fresh_id(&mut self) -> Bytes {
            self.0 += 1;
            Bytes::from(format!("id-{}", self.0))
        }
    }

    fn message(contacts: &str) -> SipMessage {
        let text = format!(
            "MESSAGE sip:b@y SIP/2.0\r\nVia: SIP/2.0/TCP x;branch=z9hG4bK1\r\nMax-Forwards: 70\r\n\
From: \"A\" <sip:a@x> ;tag=1 ;foo\r\nTo: <sip:b@y>\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\n{contacts}\
X-Other: 1\r\nContent-Length: 0\r\n\r\n"
        );
        parse_datagram(Bytes::from(text), &Limits::default()).unwrap()
    }

    #[test]
    fn roles_follow_the_leg_headers() {
        for h in LEG_HEADERS {
            let want = match h {
                "From" => Role::From,
                "To" => Role::To,
                "Content-Type" => Role::ContentType,
                _ => Role::Leg,
            };
            for name in [
                h.to_string(),
                h.to_ascii_lowercase(),
                h.to_ascii_uppercase(),
            ] {
                assert_eq!(role_of(&name), want, "{name}");
                assert!(is_leg_header(&name), "{name}");
            }
        }
        assert_eq!(role_of("accept-CONTACT"), Role::AcceptContact);
        assert_eq!(role_of("Contact"), Role::Contact);
        for other in ["Subject", "Via2", "Pat", "Conversation-IDs", ""] {
            assert_eq!(role_of(other), Role::EndToEnd, "{other}");
            assert!(!is_leg_header(other), "{other}");
        }
        // The end-to-end fields a pager translation reads, in any case.
        for (name, tracked) in [
            (CONVERSATION_ID, Tracked::ConversationId),
            (CONTRIBUTION_ID, Tracked::ContributionId),
            (IN_REPLY_TO_CONTRIBUTION_ID, Tracked::InReplyTo),
            (P_ASSERTED_SERVICE, Tracked::AssertedService),
            (P_PREFERRED_SERVICE, Tracked::PreferredService),
        ] {
            for name in [
                name.to_string(),
                name.to_ascii_lowercase(),
                name.to_ascii_uppercase(),
            ] {
                assert_eq!(role_of(&name), Role::Tracked(tracked), "{name}");
                assert!(!is_leg_header(&name), "{name}");
            }
        }
    }

    /// The one-buffer leg is the leg built field by field, whatever the Contacts.
    #[test]
    fn rewritten_leg_is_the_plain_leg() {
        let mappings = Mappings::embedded().unwrap();
        let icsi = "+g.3gpp.icsi-ref=\"urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg\"";
        let one =
            format!("Contact: <sip:a@1.2.3.4>;{icsi}\r\nAccept-Contact: *;{icsi};require\r\n");
        let shared = "Contact: <sip:a@1.2.3.4>;+g.oma.sip-im\r\n".to_string();
        let many = (0..MAX_BUFFERED_CONTACTS + 2)
            .map(|i| format!("Contact: <sip:a{i}@x>;{icsi}\r\n"))
            .collect::<String>();
        let bad = "Contact: <sip:a@x>;ok\r\nAccept-Contact: *;x=\"open\r\n".to_string();
        let accepts = (0..MAX_BUFFERED_CONTACTS + 1)
            .map(|i| format!("Accept-Contact: *;{icsi};x={i}\r\nContact: <sip:a@{i}>\r\n"))
            .collect::<String>();
        // Rules that drop a service identification field, and rules that rename.
        let drop_accept = HeaderRules {
            drop: vec!["accept-contact".into(), "x-other".into()],
            ..HeaderRules::default()
        };
        let renaming = HeaderRules {
            rename: vec![("x-other".into(), "X-New".into())],
            ..HeaderRules::default()
        };
        let rule_sets = [
            &mappings.cpm_to_simple,
            &mappings.simple_to_cpm,
            &drop_accept,
            &renaming,
        ];
        for (contacts, rules) in [one, shared, many, bad, accepts, String::new()]
            .iter()
            .flat_map(|c| rule_sets.iter().map(move |r| (c, *r)))
        {
            let msg = message(contacts);
            for side in [Side::Simple, Side::Cpm] {
                let run = |plain: bool| {
                    let mut ids = Counter(0);
                    let mut env = Env {
                        now: Millis(0),
                        ids: &mut ids,
                        datetime: "",
                    };
                    let uri = Bytes::from_static(b"sip:b@y");
                    if plain {
                        new_leg_shared(&msg, rsip::Method::Message, uri, rules, &mut env).and_then(
                            |mut out| {
                                rewrite_service_tags(&mut out, side, Service::Pager, &mappings)
                                    .map(|()| out)
                            },
                        )
                    } else {
                        new_leg_rewritten(
                            &msg,
                            rsip::Method::Message,
                            uri,
                            rules,
                            side,
                            Service::Pager,
                            &mappings,
                            &mut env,
                            None,
                        )
                        .map(|(m, _)| m.finish())
                    }
                    .map(|m| m.serialize())
                    .map_err(|e| e.to_string())
                };
                assert_eq!(run(false), run(true), "{contacts:?} to {side:?}");
            }
        }
    }

    proptest::proptest! {
        /// The service read from the first P-Asserted-Service / P-Preferred-Service values (the
        /// usual one-ICSI value at once) is the one `cpm_service` reads from the request.
        #[test]
        fn service_given_is_cpm_service(
            pieces in proptest::collection::vec(proptest::sample::select(vec![
                "urn:urn-7:3gpp-service.ims.icsi.oma.cpm.msg",
                "URN:urn-7:3gpp-service.ims.icsi.oma.cpm.MSG",
                "urn:urn-7:3gpp-service.ims.icsi.oma.cpm.session",
                "urn:urn-7:3gpp-service.ims.icsi.oma.cpm.msg,x",
                "urn:x:unknown", ",", " ", "\t", "",
            ]), 0..4),
            asserted in proptest::bool::ANY,
        ) {
            let mappings = Mappings::embedded().unwrap();
            let value: String = pieces.concat();
            let name = if asserted { P_ASSERTED_SERVICE } else { P_PREFERRED_SERVICE };
            let msg = message(&format!("{name}: {value}\r\n"));
            let first = msg.header(name);
            let (a, p) = if asserted { (first, None) } else { (None, first) };
            let show = |r: Result<Option<Service>, TranslateError>| r.map_err(|e| e.to_string());
            proptest::prop_assert_eq!(
                show(cpm_service_given(&msg, a, p, &mappings)),
                show(cpm_service(&msg, &mappings))
            );
        }
    }

    /// [`role_of`] as it was (a length switch, then `is_named`), kept as the reference.
    fn reference_role_of(name: &str) -> Role {
        let is = |h: &str| crate::translate::params::is_named(name, h);
        let leg = match name.len() {
            2 if is("To") => return Role::To,
            4 if is("From") => return Role::From,
            7 if is("Contact") => return Role::Contact,
            12 if is("Content-Type") => return Role::ContentType,
            14 if is("Accept-Contact") => return Role::AcceptContact,
            15 if is(CONVERSATION_ID) => return Role::Tracked(Tracked::ConversationId),
            15 if is(CONTRIBUTION_ID) => return Role::Tracked(Tracked::ContributionId),
            18 if is(P_ASSERTED_SERVICE) => return Role::Tracked(Tracked::AssertedService),
            19 if is(P_PREFERRED_SERVICE) => return Role::Tracked(Tracked::PreferredService),
            25 if is(IN_REPLY_TO_CONTRIBUTION_ID) => return Role::Tracked(Tracked::InReplyTo),
            3 => is("Via"),
            4 => is("CSeq") || is("Path"),
            5 => is("Route"),
            7 => is("Call-ID"),
            12 => is("Max-Forwards") || is("Record-Route"),
            13 => is("Service-Route") || is("Authorization"),
            14 => is("Content-Length"),
            17 => is("P-Charging-Vector"),
            19 => is("Proxy-Authorization"),
            20 => is("P-Visited-Network-ID"),
            29 => is("P-Charging-Function-Addresses"),
            _ => false,
        };
        if leg { Role::Leg } else { Role::EndToEnd }
    }

    /// A known name (or a near one) in a random case mix, with a byte changed or not.
    fn near_name() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let names: Vec<&str> = LEG_HEADERS
            .iter()
            .copied()
            .chain([
                "Contact",
                "Accept-Contact",
                CONVERSATION_ID,
                CONTRIBUTION_ID,
                IN_REPLY_TO_CONTRIBUTION_ID,
                P_ASSERTED_SERVICE,
                P_PREFERRED_SERVICE,
                "Session-Replaces",
                "X-Other",
            ])
            .collect();
        (
            proptest::sample::select(names),
            proptest::collection::vec(any::<bool>(), 32),
            any::<usize>(),
            proptest::sample::select(vec!['\r', '\0', 'M', 'm', '-', '\r', 'é', 'x', '\u{7f}']),
            any::<bool>(),
        )
            .prop_map(|(name, upper, at, c, change)| {
                let mut s: String = name
                    .chars()
                    .zip(upper.iter().cycle())
                    .map(|(ch, u)| match u {
                        true => ch.to_ascii_uppercase(),
                        false => ch.to_ascii_lowercase(),
                    })
                    .collect();
                if change && !s.is_empty() {
                    let at = at % s.len();
                    if s.is_char_boundary(at) && s.is_char_boundary(at + 1) {
                        s.replace_range(at..at + 1, &c.to_string());
                    }
                }
                s
            })
    }

    proptest::proptest! {
        // The word comparisons are the reference's case-insensitive ones, for known names in
        // any case, with a byte changed (`-` for `\r` and the like), and for any name.
        #[test]
        fn role_of_is_the_reference(
            name in proptest::prop_oneof![
                near_name(),
                "[a-zA-Z\\-\r\x00\u{e9}]{0,34}",
                proptest::prelude::any::<String>(),
            ],
        ) {
            proptest::prop_assert_eq!(role_of(&name), reference_role_of(&name));
        }

        // A parsed field's role, looked up by the index of a name the codec knows, is the
        // role of its name.
        #[test]
        fn field_role_is_the_role_of_the_name(
            name in proptest::prop_oneof![
                near_name(),
                proptest::strategy::Strategy::prop_map(
                    proptest::sample::select(crate::wire::sip::known_names()),
                    String::from,
                ),
                "[a-zA-Z\\-]{1,34}",
            ],
            upper in proptest::prelude::any::<bool>(),
        ) {
            let name = match upper {
                true => name.to_ascii_uppercase(),
                false => name.to_ascii_lowercase(),
            };
            let raw = format!(
                "MESSAGE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                 {name}: v\r\nContent-Length: 0\r\n\r\n"
            );
            if let Ok(m) = crate::wire::sip::parse_datagram(
                Bytes::from(raw),
                &crate::wire::sip::Limits::default(),
            ) && let Some(f) = m.fields().and_then(|fs| fs.get(1))
            {
                proptest::prop_assert_eq!(field_role(f), role_of(f.name()));
                proptest::prop_assert_eq!(field_role(f), reference_role_of(&name));
            }
        }

        // What a field is to the new leg, the rules' drops tested by role or by length, is
        // what the rules say of its name.
        #[test]
        fn leg_fields_drop_what_the_rules_drop(
            drop in proptest::collection::vec(near_name(), 0..5),
            names in proptest::collection::vec(near_name(), 1..12),
        ) {
            let rules = HeaderRules { drop, ..HeaderRules::default() };
            // Names the parser reads as written; the leg's own fields (never copied, whatever
            // the rules) left out, their values checked by the parser.
            let text: String = names
                .iter()
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
                .filter(|n| !matches!(
                    role_of(n),
                    Role::Leg | Role::ContentType | Role::From | Role::To
                ))
                .map(|n| format!("{n}: <sip:a@x>\r\n"))
                .collect();
            let msg = message(&text);
            let Some(fields) = msg.fields() else { return Ok(()) };
            let mut r = LegFields::new(&rules);
            for f in fields {
                r.take(f, role_of(f.name()), &rules);
            }
            for (i, f) in fields.iter().enumerate() {
                let (name, bit) = (f.name(), 1u64 << i);
                let role = role_of(name);
                let kept = !rules.drops(name);
                let copied = matches!(role, Role::EndToEnd | Role::Tracked(_)) && kept;
                proptest::prop_assert_eq!(r.copies & bit != 0, copied, "{}", name);
                proptest::prop_assert_eq!(r.contacts & bit != 0, role == Role::Contact && kept);
                proptest::prop_assert_eq!(
                    r.accepts & bit != 0,
                    role == Role::AcceptContact && kept
                );
            }
        }
    }
}
