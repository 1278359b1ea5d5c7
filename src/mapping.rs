//! The operator's rewrite rules (`mappings/*.toml`), loaded and validated at start.
//!
//! ARCHITECTURE.md layer 3: the code holds the mechanism (how a feature tag is matched, how a
//! header is dropped), the files hold the data (which tag, which header). A bad file stops
//! start-up with `file:line:column: reason`; nothing here is consulted half-loaded.
//!
//! Three files, each with a fixed schema (unknown keys are errors, so that a typo is not silently
//! ignored):
//! - `services.toml`: per service, the CPM ICSI and the SIMPLE IM feature tag;
//! - `headers.toml`: per direction, SIP header fields to drop or rename;
//! - `content.toml`: CPIM namespaces, and per side the content types and how isComposing and
//!   pager bodies are carried.
//!
//! The same files are compiled into the binary ([`Mappings::embedded`]), so that the gateway
//! starts on its defaults with no directory at hand.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::tomlfile::{Source, error_at, parse_toml};

/// A mapping file that cannot be used: where (`file:line:column`) and why.
pub type MappingError = crate::tomlfile::FileError;

/// The services the translator tells apart (docs/interworking-notes.md §1). The set is code:
/// each needs its own handling; the identifiers are data.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Service {
    /// 1-1 chat session (CPM 2.0 SD 5.2.1).
    Chat,
    /// Group chat session.
    GroupChat,
    /// Standalone message, pager mode.
    Pager,
    /// Standalone message, large message mode (MSRP).
    LargeMessage,
    /// File transfer over MSRP (RFC 5547).
    FileTransfer,
    /// Delivery of deferred (stored) messages.
    Deferred,
    /// Network-generated system messages.
    SystemMessage,
}

impl Service {
    /// Every service, in the order of `services.toml`.
    pub const ALL: [Service; 7] = [
        Service::Chat,
        Service::GroupChat,
        Service::Pager,
        Service::LargeMessage,
        Service::FileTransfer,
        Service::Deferred,
        Service::SystemMessage,
    ];

    /// The section name in `services.toml`.
    pub fn key(self) -> &'static str {
        match self {
            Service::Chat => "chat",
            Service::GroupChat => "group_chat",
            Service::Pager => "pager",
            Service::LargeMessage => "large_message",
            Service::FileTransfer => "file_transfer",
            Service::Deferred => "deferred",
            Service::SystemMessage => "system_message",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// How one service is identified on each network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceIds {
    /// The CPM ICSI as written in P-Preferred-Service / P-Asserted-Service (RFC 6050).
    pub cpm_icsi: String,
    /// The same ICSI percent-escaped as the value of `+g.3gpp.icsi-ref` in Contact and
    /// Accept-Contact (3GPP TS 24.229 §7.2A.8: `:` becomes `%3A`).
    pub cpm_icsi_escaped: String,
    /// The SIMPLE IM boolean feature tag (RFC 3840), e.g. `+g.oma.sip-im`.
    pub simple_feature_tag: String,
}

/// [`<[u8]>::eq_ignore_ascii_case`] eight bytes at a time: the translator asks it of the
/// end-to-end fields of every request it translates (the byte loop folded one byte a step).
#[inline]
fn eq_ignore_ascii_case_words(a: &[u8], b: &[u8]) -> bool {
    /// `w` with its bytes `A`..=`Z` made lower case, the others (`>= 0x80` too) unchanged.
    #[inline]
    fn lowered(w: u64) -> u64 {
        const ONES: u64 = 0x0101_0101_0101_0101;
        let low7 = w & (ONES * 0x7f);
        // The high bit of each byte: set where its low 7 bits are >= `A`, and where > `Z`
        // (no carry crosses a byte: at most 0x7f + 0x3f).
        let at_least_a = low7 + ONES * (0x80 - u64::from(b'A'));
        let past_z = low7 + ONES * (0x80 - u64::from(b'Z') - 1);
        let upper = at_least_a & !past_z & !w & (ONES * 0x80);
        w | (upper >> 2)
    }
    let word = |s: &[u8], at: usize| {
        s.get(at..at + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            .map(u64::from_le_bytes)
    };
    if a.len() != b.len() {
        return false;
    }
    let n = a.len();
    if n < 8 {
        return a.eq_ignore_ascii_case(b);
    }
    let same = |at: usize| word(a, at).map(lowered) == word(b, at).map(lowered);
    // Whole words, then the last eight bytes (overlapping the words before when `n` is not a
    // multiple of eight).
    let mut at = 0;
    while at + 8 <= n {
        if !same(at) {
            return false;
        }
        at += 8;
    }
    at == n || same(n - 8)
}

/// Header field rules for one direction.
#[derive(Debug, Clone, Default)]
pub struct HeaderRules {
    /// Header names removed, lower-cased for comparison (RFC 3261 §7.3.1).
    pub drop: Vec<String>,
    /// `(old name lower-cased, new name as written)`.
    pub rename: Vec<(String, String)>,
    /// What the translator reads of `drop` for every request, made once on first use
    /// (`translate::leg::DropIndex`): `drop` is not changed after that.
    pub(crate) drop_index: std::sync::OnceLock<crate::translate::leg::DropIndex>,
}

/// The rules, not whether their index was made yet.
impl PartialEq for HeaderRules {
    fn eq(&self, other: &HeaderRules) -> bool {
        self.drop == other.drop && self.rename == other.rename
    }
}
impl Eq for HeaderRules {}

impl HeaderRules {
    /// Whether a header named `name` is dropped (case-insensitive).
    pub fn drops(&self, name: &str) -> bool {
        self.drop
            .iter()
            .any(|d| eq_ignore_ascii_case_words(d.as_bytes(), name.as_bytes()))
    }

    /// The new name of a header named `name`, if it is renamed.
    pub fn renamed(&self, name: &str) -> Option<&str> {
        self.rename
            .iter()
            .find(|(old, _)| old.eq_ignore_ascii_case(name))
            .map(|(_, new)| new.as_str())
    }
}

/// How a side carries a content (RFC 3994 for isComposing, RFC 5438 §6 for pager bodies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Carriage {
    /// The content alone, with its own content type.
    Bare,
    /// Wrapped in `message/cpim`.
    Cpim,
    /// Not carried at all: the gateway accepts and discards it (pager isComposing only).
    Drop,
}

/// Content rules of one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideContent {
    /// `a=accept-types` written on this side's MSRP leg (RFC 4975 §8.6).
    pub accept_types: Vec<String>,
    /// `a=accept-wrapped-types` written on this side's MSRP leg.
    pub accept_wrapped_types: Vec<String>,
    /// isComposing inside a chat session: bare or cpim.
    pub iscomposing_in_session: Carriage,
    /// isComposing as a pager MESSAGE: bare, cpim or drop.
    pub iscomposing_pager: Carriage,
    /// Body of a pager MESSAGE: bare or cpim.
    pub pager_body: Carriage,
}

/// See [`Mappings::services_id`]. Equal whatever the numbers: two loads of the same files are
/// the same mappings.
#[derive(Debug, Clone, Copy)]
struct ServicesId(u64);

impl ServicesId {
    fn fresh() -> ServicesId {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        ServicesId(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

impl PartialEq for ServicesId {
    fn eq(&self, _: &ServicesId) -> bool {
        true
    }
}
impl Eq for ServicesId {}

/// Everything in `mappings/`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mappings {
    /// Names this set of services for caches of what is derived from them (the translator's
    /// [`feature_tags`](crate::translate::feature_tags) memo): unique per load, kept by a
    /// clone (the services cannot change after the load).
    services_id: ServicesId,
    /// Every service's identifiers, in [`Service`] order (a short list: looked up on every
    /// request, cheaper to walk than a map).
    services: Vec<(Service, ServiceIds)>,
    /// Rules for requests going from the CPM side to the SIMPLE side.
    pub cpm_to_simple: HeaderRules,
    /// Rules for requests going from the SIMPLE side to the CPM side.
    pub simple_to_cpm: HeaderRules,
    /// CPIM namespaces by preferred prefix: `(prefix, uri)` (RFC 3862 §3.3.6).
    pub cpim_namespaces: Vec<(String, String)>,
    /// Content rules of the CPM side.
    pub cpm: SideContent,
    /// Content rules of the SIMPLE side.
    pub simple: SideContent,
}

const SERVICES_FILE: &str = "services.toml";
const HEADERS_FILE: &str = "headers.toml";
const CONTENT_FILE: &str = "content.toml";

impl Mappings {
    /// The mappings compiled into the binary: the files of the repository's `mappings/`.
    pub fn embedded() -> Result<Mappings, MappingError> {
        Self::from_sources(
            (
                "mappings/services.toml",
                include_str!("../mappings/services.toml"),
            ),
            (
                "mappings/headers.toml",
                include_str!("../mappings/headers.toml"),
            ),
            (
                "mappings/content.toml",
                include_str!("../mappings/content.toml"),
            ),
        )
    }

    /// Load the three files from `dir`.
    pub fn load_dir(dir: &Path) -> Result<Mappings, MappingError> {
        let read = |name: &str| {
            let path = dir.join(name);
            let shown = path.display().to_string();
            crate::tomlfile::read(&path).map(|text| (shown, text))
        };
        let services = read(SERVICES_FILE)?;
        let headers = read(HEADERS_FILE)?;
        let content = read(CONTENT_FILE)?;
        Self::from_sources(
            (&services.0, &services.1),
            (&headers.0, &headers.1),
            (&content.0, &content.1),
        )
    }

    /// Parse and validate the three files given as `(name for errors, text)`.
    pub fn from_sources(
        services: (&str, &str),
        headers: (&str, &str),
        content: (&str, &str),
    ) -> Result<Mappings, MappingError> {
        let svc: RawServices = parse_toml(services)?;
        let hdr: RawHeaders = parse_toml(headers)?;
        let cnt: RawContent = parse_toml(content)?;
        Ok(Mappings {
            services_id: ServicesId::fresh(),
            services: validate_services(svc, services)?.into_iter().collect(),
            cpm_to_simple: validate_header_rules(hdr.cpm_to_simple, headers)?,
            simple_to_cpm: validate_header_rules(hdr.simple_to_cpm, headers)?,
            cpim_namespaces: validate_namespaces(cnt.cpim.namespaces, content)?,
            cpm: validate_side(cnt.cpm, content)?,
            simple: validate_side(cnt.simple, content)?,
        })
    }

    /// Unique to the services of this load (and its clones): what a cache of values derived
    /// from [`service`](Self::service) and [`service_by_icsi`](Self::service_by_icsi) keys on.
    pub fn services_id(&self) -> u64 {
        self.services_id.0
    }

    /// The identifiers of `service`.
    pub fn service(&self, service: Service) -> &ServiceIds {
        // Validation guarantees that every service has an entry; the fallback keeps this total.
        static EMPTY: ServiceIds = ServiceIds {
            cpm_icsi: String::new(),
            cpm_icsi_escaped: String::new(),
            simple_feature_tag: String::new(),
        };
        self.services
            .iter()
            .find(|(s, _)| *s == service)
            .map_or(&EMPTY, |(_, ids)| ids)
    }

    /// The service whose CPM ICSI is `icsi`, in raw (`urn:...`) or escaped (`urn%3A...`) form.
    /// URN comparison: the `urn` scheme and namespace are case-insensitive (RFC 8141 §3.1); ICSIs
    /// are compared case-insensitively as deployed clients vary the case of the whole string.
    pub fn service_by_icsi(&self, icsi: &str) -> Option<Service> {
        // The cheap tests first (length, last byte): most ICSIs differ in one of them.
        let last = icsi.as_bytes().last().map(u8::to_ascii_lowercase);
        // An ICSI is usually written as the mappings spell it: an exact compare settles it.
        let same = |known: &str| {
            known.len() == icsi.len()
                && known.as_bytes().last().map(u8::to_ascii_lowercase) == last
                && (known == icsi || known.eq_ignore_ascii_case(icsi))
        };
        self.services
            .iter()
            .find_map(|(s, ids)| (same(&ids.cpm_icsi) || same(&ids.cpm_icsi_escaped)).then_some(*s))
    }

    /// The services whose SIMPLE IM feature tag is `tag` (several share `+g.oma.sip-im`).
    pub fn services_by_simple_tag<'a>(
        &'a self,
        tag: &'a str,
    ) -> impl Iterator<Item = Service> + 'a {
        self.services
            .iter()
            .filter(move |(_, ids)| ids.simple_feature_tag.eq_ignore_ascii_case(tag))
            .map(|(s, _)| *s)
    }

    /// The URI of the CPIM namespace with preferred prefix `prefix` (`imdn`, `cpm`).
    pub fn cpim_namespace(&self, prefix: &str) -> Option<&str> {
        self.cpim_namespaces
            .iter()
            .find(|(p, _)| p == prefix)
            .map(|(_, uri)| uri.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// The files' schemas, as read (spans kept for error positions).

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServices {
    chat: Spanned<RawService>,
    group_chat: Spanned<RawService>,
    pager: Spanned<RawService>,
    large_message: Spanned<RawService>,
    file_transfer: Spanned<RawService>,
    deferred: Spanned<RawService>,
    system_message: Spanned<RawService>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    cpm_icsi: Spanned<String>,
    simple_feature_tag: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeaders {
    cpm_to_simple: RawHeaderRules,
    simple_to_cpm: RawHeaderRules,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeaderRules {
    #[serde(default)]
    drop: Vec<Spanned<String>>,
    #[serde(default)]
    rename: BTreeMap<String, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContent {
    cpim: RawCpim,
    cpm: RawSide,
    simple: RawSide,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCpim {
    namespaces: BTreeMap<String, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSide {
    accept_types: Vec<Spanned<String>>,
    accept_wrapped_types: Vec<Spanned<String>>,
    iscomposing_in_session: Spanned<Carriage>,
    iscomposing_pager: Spanned<Carriage>,
    pager_body: Spanned<Carriage>,
}

// ---------------------------------------------------------------------------------------------
// Validation.

fn validate_services(
    raw: RawServices,
    src: Source<'_>,
) -> Result<BTreeMap<Service, ServiceIds>, MappingError> {
    let entries = [
        (Service::Chat, raw.chat),
        (Service::GroupChat, raw.group_chat),
        (Service::Pager, raw.pager),
        (Service::LargeMessage, raw.large_message),
        (Service::FileTransfer, raw.file_transfer),
        (Service::Deferred, raw.deferred),
        (Service::SystemMessage, raw.system_message),
    ];
    let mut out: BTreeMap<Service, ServiceIds> = BTreeMap::new();
    for (service, entry) in entries {
        let entry = entry.into_inner();
        let icsi = entry.cpm_icsi;
        if !is_urn(icsi.get_ref()) {
            return Err(error_at(
                src,
                icsi.span().start,
                format!(
                    "{service}: cpm_icsi {:?} is not a URN (urn:<nid>:<nss>, RFC 8141)",
                    icsi.get_ref()
                ),
            ));
        }
        // A P-Asserted-Service / P-Preferred-Service value is a list of Service-IDs separated by
        // commas (RFC 6050 §4.1): an ICSI with a comma (RFC 8141 lets an NSS have one) could
        // not be named in it.
        if icsi.get_ref().contains(',') {
            return Err(error_at(
                src,
                icsi.span().start,
                format!(
                    "{service}: cpm_icsi {:?} has a comma, which separates Service-IDs (RFC 6050 §4.1)",
                    icsi.get_ref()
                ),
            ));
        }
        // Two services with one ICSI could not be told apart (classification is by ICSI).
        if let Some((other, _)) = out
            .iter()
            .find(|(_, ids)| ids.cpm_icsi.eq_ignore_ascii_case(icsi.get_ref()))
        {
            return Err(error_at(
                src,
                icsi.span().start,
                format!("{service}: cpm_icsi is already the ICSI of {other}"),
            ));
        }
        let tag = entry.simple_feature_tag;
        if !is_feature_tag(tag.get_ref()) {
            return Err(error_at(
                src,
                tag.span().start,
                format!(
                    "{service}: simple_feature_tag {:?} is not a feature tag (\"+\" ftag-name, RFC 3840 §9)",
                    tag.get_ref()
                ),
            ));
        }
        let cpm_icsi = icsi.into_inner();
        out.insert(
            service,
            ServiceIds {
                cpm_icsi_escaped: cpm_icsi.replace(':', "%3A"),
                cpm_icsi,
                simple_feature_tag: tag.into_inner(),
            },
        );
    }
    Ok(out)
}

/// Header fields the gateway itself needs on every request; a rule must not remove or rename
/// them (RFC 3261 §8.1.1, and the body framing of §20.14/§20.15).
const PROTECTED_HEADERS: [&str; 8] = [
    "via",
    "from",
    "to",
    "call-id",
    "cseq",
    "max-forwards",
    "content-length",
    "content-type",
];

fn check_header_name(src: Source<'_>, name: &str, offset: usize) -> Result<(), MappingError> {
    if name.is_empty() || !name.bytes().all(is_token_char) {
        return Err(error_at(
            src,
            offset,
            format!("{name:?} is not a header field name (a token, RFC 3261 §25.1)"),
        ));
    }
    if PROTECTED_HEADERS
        .iter()
        .any(|p| p.eq_ignore_ascii_case(name))
    {
        return Err(error_at(
            src,
            offset,
            format!("{name} cannot be dropped or renamed: the gateway needs it (RFC 3261 §8.1.1)"),
        ));
    }
    Ok(())
}

fn validate_header_rules(
    raw: RawHeaderRules,
    src: Source<'_>,
) -> Result<HeaderRules, MappingError> {
    let mut rules = HeaderRules::default();
    for name in raw.drop {
        check_header_name(src, name.get_ref(), name.span().start)?;
        rules.drop.push(name.into_inner().to_ascii_lowercase());
    }
    for (old, new) in raw.rename {
        let offset = new.span().start;
        check_header_name(src, &old, offset)?;
        check_header_name(src, new.get_ref(), offset)?;
        if rules.drops(&old) {
            return Err(error_at(
                src,
                offset,
                format!("{old} is both dropped and renamed"),
            ));
        }
        rules
            .rename
            .push((old.to_ascii_lowercase(), new.into_inner()));
    }
    Ok(rules)
}

fn validate_namespaces(
    raw: BTreeMap<String, Spanned<String>>,
    src: Source<'_>,
) -> Result<Vec<(String, String)>, MappingError> {
    let mut out = Vec::with_capacity(raw.len());
    for (prefix, uri) in raw {
        let offset = uri.span().start;
        if prefix.is_empty() || !prefix.bytes().all(is_token_char) {
            return Err(error_at(
                src,
                offset,
                format!("CPIM namespace prefix {prefix:?} is not a token (RFC 3862 §3.3.6)"),
            ));
        }
        let u = uri.get_ref();
        if u.is_empty()
            || !u.contains(':')
            || u.bytes().any(|b| b <= b' ' || b == b'<' || b == b'>')
        {
            return Err(error_at(
                src,
                offset,
                format!("CPIM namespace {prefix}: {u:?} is not an absolute URI"),
            ));
        }
        out.push((prefix, uri.into_inner()));
    }
    Ok(out)
}

fn validate_side(raw: RawSide, src: Source<'_>) -> Result<SideContent, MappingError> {
    let media_list = |list: Vec<Spanned<String>>, key: &str| {
        let mut out = Vec::with_capacity(list.len());
        for t in list {
            if !is_accept_type(t.get_ref()) {
                return Err(error_at(
                    src,
                    t.span().start,
                    format!(
                        "{key}: {:?} is not a media type, type/*, or * (RFC 4975 §8.6)",
                        t.get_ref()
                    ),
                ));
            }
            out.push(t.into_inner());
        }
        if out.is_empty() {
            return Err(error_at(src, 0, format!("{key} is empty")));
        }
        Ok(out)
    };
    let accept_types = media_list(raw.accept_types, "accept_types")?;
    let accept_wrapped_types = media_list(raw.accept_wrapped_types, "accept_wrapped_types")?;
    // Only pager isComposing may be dropped: inside a session the far end expects it, and a
    // message body is never discarded.
    for (key, value) in [
        ("iscomposing_in_session", &raw.iscomposing_in_session),
        ("pager_body", &raw.pager_body),
    ] {
        if *value.get_ref() == Carriage::Drop {
            return Err(error_at(
                src,
                value.span().start,
                format!("{key} cannot be \"drop\" (only iscomposing_pager can)"),
            ));
        }
    }
    Ok(SideContent {
        accept_types,
        accept_wrapped_types,
        iscomposing_in_session: raw.iscomposing_in_session.into_inner(),
        iscomposing_pager: raw.iscomposing_pager.into_inner(),
        pager_body: raw.pager_body.into_inner(),
    })
}

/// RFC 3261 §25.1 `token` characters.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// `urn:<nid>:<nss>` (RFC 8141 §2), without white space or characters that would need quoting
/// in a SIP header.
fn is_urn(s: &str) -> bool {
    let Some(rest) = s
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("urn:"))
        .and_then(|_| s.get(4..))
    else {
        return false;
    };
    let Some((nid, nss)) = rest.split_once(':') else {
        return false;
    };
    !nid.is_empty()
        && nid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !nss.is_empty()
        && nss
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b))
}

/// RFC 3840 §9: `"+" ftag-name`, `ftag-name = ALPHA *( ALPHA / DIGIT / "!" / "'" / "." / "-" / "%" )`.
fn is_feature_tag(s: &str) -> bool {
    let Some(name) = s.strip_prefix('+') else {
        return false;
    };
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"!'.-%".contains(&b))
}

/// An `a=accept-types` entry (RFC 4975 §8.6 / §9): `*`, `type/*` or `type/subtype`.
fn is_accept_type(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    let Some((ty, sub)) = s.split_once('/') else {
        return false;
    };
    let token = |t: &str| !t.is_empty() && t.bytes().all(is_token_char);
    token(ty) && (sub == "*" || token(sub))
}

#[cfg(test)]
mod tests {
    proptest::proptest! {
        /// The word-at-a-time compare is the standard library's, for any bytes (`>= 0x80`,
        /// punctuation next to the letters) and lengths around the word size.
        #[test]
        fn words_compare_as_eq_ignore_ascii_case(
            a in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            flips in proptest::collection::vec(proptest::prelude::any::<bool>(), 40),
            change in proptest::option::of((0usize..40, proptest::prelude::any::<u8>())),
        ) {
            // `b`: `a` with some letters' case flipped, and maybe one byte changed.
            let mut b: Vec<u8> = a.iter().zip(&flips).map(|(c, f)| match f {
                true if c.is_ascii_alphabetic() => c ^ 0x20,
                _ => *c,
            }).collect();
            if let Some((i, v)) = change && let Some(c) = b.get_mut(i) {
                *c = v;
            }
            proptest::prop_assert_eq!(
                super::eq_ignore_ascii_case_words(&a, &b),
                a.eq_ignore_ascii_case(&b)
            );
            proptest::prop_assert!(super::eq_ignore_ascii_case_words(&a, &a));
        }
    }

    /// Every pair of single bytes (the letters' neighbours `@ [ ` {` and the bytes `>= 0x80`
    /// that fold to them in 7 bits), at each place in a word and in the tail.
    #[test]
    fn words_fold_only_ascii_letters() {
        for x in 0..=255u8 {
            for y in 0..=255u8 {
                for (base, at) in [b"content-transfer".as_slice(), b"accept-conta"]
                    .into_iter()
                    .flat_map(|s| [0usize, 5, 7, 9, 11].map(|at| (s, at)))
                {
                    let (mut a, mut b) = (base.to_vec(), base.to_vec());
                    a[at] = x;
                    b[at] = y;
                    assert_eq!(
                        super::eq_ignore_ascii_case_words(&a, &b),
                        a.eq_ignore_ascii_case(&b),
                        "{x:#x} {y:#x} at {at} of {}",
                        base.len()
                    );
                }
            }
        }
    }

    use super::*;

    fn file(name: &str) -> String {
        std::fs::read_to_string(format!("{}/mappings/{name}", env!("CARGO_MANIFEST_DIR")))
            .unwrap_or_default()
    }

    fn load_with(services: &str, headers: &str, content: &str) -> Result<Mappings, MappingError> {
        Mappings::from_sources(
            ("services.toml", services),
            ("headers.toml", headers),
            ("content.toml", content),
        )
    }

    #[test]
    fn embedded_mappings_load_and_match_the_directory() {
        let embedded = Mappings::embedded().expect("embedded mappings are valid");
        let dir = Mappings::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings"))
            .expect("mappings/ is valid");
        assert_eq!(embedded, dir);
    }

    #[test]
    fn services_are_found_by_either_icsi_form_and_by_tag() {
        let m = Mappings::embedded().unwrap();
        let chat = m.service(Service::Chat);
        assert_eq!(
            chat.cpm_icsi_escaped,
            "urn%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.session"
        );
        assert_eq!(m.service_by_icsi(&chat.cpm_icsi), Some(Service::Chat));
        assert_eq!(
            m.service_by_icsi("URN%3Aurn-7%3A3gpp-service.ims.icsi.oma.cpm.msg"),
            Some(Service::Pager)
        );
        assert_eq!(m.service_by_icsi("urn:urn-7:unknown"), None);
        let large: Vec<_> = m
            .services_by_simple_tag("+g.oma.sip-im.large-message")
            .collect();
        assert_eq!(large, vec![Service::LargeMessage]);
        assert!(
            m.services_by_simple_tag("+g.oma.sip-im")
                .any(|s| s == Service::Chat)
        );
        assert_eq!(m.cpim_namespace("imdn"), Some("urn:ietf:params:imdn"));
    }

    #[test]
    fn header_rules_compare_case_insensitively() {
        let m = Mappings::embedded().unwrap();
        assert!(m.cpm_to_simple.drops("conversation-id"));
        assert!(m.cpm_to_simple.drops("P-Preferred-Service"));
        assert!(!m.cpm_to_simple.drops("Contribution-ID"));
        assert!(!m.simple_to_cpm.drops("Conversation-ID"));
    }

    #[test]
    fn a_bad_icsi_is_reported_with_file_line_and_column() {
        let services = file("services.toml").replace(
            "\"urn:urn-7:3gpp-service.ims.icsi.oma.cpm.msg\"",
            "\"not a urn\"",
        );
        let err = load_with(&services, &file("headers.toml"), &file("content.toml")).unwrap_err();
        let line = services
            .lines()
            .position(|l| l.contains("not a urn"))
            .unwrap()
            + 1;
        assert_eq!(err.file, "services.toml");
        assert_eq!(err.line, line);
        assert_eq!(err.column, 12);
        assert!(err.to_string().contains("pager: cpm_icsi"), "{err}");
    }

    #[test]
    fn icsi_with_a_comma_is_refused() {
        let services = file("services.toml").replace(
            "\"urn:urn-7:3gpp-service.ims.icsi.oma.cpm.msg\"",
            "\"urn:urn-7:3gpp-service.ims.icsi.oma.cpm.msg,x\"",
        );
        let err = load_with(&services, &file("headers.toml"), &file("content.toml")).unwrap_err();
        assert_eq!(err.file, "services.toml");
        assert!(err.to_string().contains("pager: cpm_icsi"), "{err}");
        assert!(err.to_string().contains("RFC 6050"), "{err}");
    }

    #[test]
    fn duplicate_icsi_missing_service_and_unknown_keys_are_refused() {
        let dup =
            file("services.toml").replace("ims.icsi.oma.cpm.msg\"", "ims.icsi.oma.cpm.session\"");
        let err = load_with(&dup, &file("headers.toml"), &file("content.toml")).unwrap_err();
        assert!(err.reason.contains("already the ICSI of chat"), "{err}");

        let missing = file("services.toml").replace("[deferred]", "[deferred_typo]");
        let err = load_with(&missing, &file("headers.toml"), &file("content.toml")).unwrap_err();
        assert!(err.reason.contains("deferred_typo"), "{err}");

        let unknown = file("content.toml").replace("pager_body = \"cpim\"", "pager_bdy = \"cpim\"");
        let err = load_with(&file("services.toml"), &file("headers.toml"), &unknown).unwrap_err();
        assert!(err.reason.contains("pager_bdy"), "{err}");
        assert!(err.line > 1);
    }

    #[test]
    fn protected_headers_and_bad_tokens_are_refused() {
        let headers = file("headers.toml").replace("\"Session-Replaces\",", "\"Call-ID\",");
        let err = load_with(&file("services.toml"), &headers, &file("content.toml")).unwrap_err();
        assert!(err.reason.contains("Call-ID cannot be dropped"), "{err}");

        let headers = file("headers.toml").replace("\"Session-Replaces\",", "\"Bad Name\",");
        let err = load_with(&file("services.toml"), &headers, &file("content.toml")).unwrap_err();
        assert!(err.reason.contains("not a header field name"), "{err}");

        let headers = file("headers.toml").replacen(
            "rename = {}",
            "rename = { \"Conversation-ID\" = \"X-Conversation-ID\" }",
            1,
        );
        let err = load_with(&file("services.toml"), &headers, &file("content.toml")).unwrap_err();
        assert!(err.reason.contains("both dropped and renamed"), "{err}");
    }

    #[test]
    fn content_rules_are_validated() {
        let content = file("content.toml").replacen("\"text/plain\"", "\"text plain\"", 1);
        let err = load_with(&file("services.toml"), &file("headers.toml"), &content).unwrap_err();
        assert!(err.reason.contains("not a media type"), "{err}");

        let content = file("content.toml").replacen(
            "iscomposing_in_session = \"bare\"",
            "iscomposing_in_session = \"drop\"",
            1,
        );
        let err = load_with(&file("services.toml"), &file("headers.toml"), &content).unwrap_err();
        assert!(err.reason.contains("cannot be \"drop\""), "{err}");

        let content = file("content.toml").replacen(
            "iscomposing_pager = \"cpim\"",
            "iscomposing_pager = \"sometimes\"",
            1,
        );
        let err = load_with(&file("services.toml"), &file("headers.toml"), &content).unwrap_err();
        assert!(err.reason.contains("sometimes"), "{err}");
    }

    #[test]
    fn syntax_checks() {
        assert!(is_feature_tag("+g.oma.sip-im"));
        assert!(!is_feature_tag("g.oma.sip-im"));
        assert!(!is_feature_tag("+1abc"));
        assert!(is_urn("urn:urn-7:3gpp-service.ims.icsi.oma.cpm.session"));
        assert!(!is_urn("urn:"));
        assert!(!is_urn("urn:x"));
        assert!(!is_urn("urn:a:b c"));
        assert!(is_accept_type("*"));
        assert!(is_accept_type("text/*"));
        assert!(!is_accept_type("text/"));
    }
}
