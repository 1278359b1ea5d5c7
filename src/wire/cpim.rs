//! `message/cpim` (RFC 3862): the envelope of CPM and SIMPLE IM messages, IMDNs and
//! isComposing indications.
//!
//! Layout (RFC 3862 §2): the CPIM message headers, a blank line, the MIME headers of the
//! encapsulated content, a blank line, the content. The input is the `message/cpim` body, i.e.
//! what follows the outer `Content-Type: message/cpim` header and its blank line.
//!
//! **Errata 3013 layout.** RFC 5438's examples (§7.1, §7.2.1.1, ...) leave out the blank line
//! between the CPIM headers and the content headers (errata 3013, Held for Document Update) and
//! clients copied them. On input, while reading CPIM headers, a line whose header name has no
//! prefix and starts with `Content-` (ASCII case-insensitive) cannot be a CPIM header (RFC 3862
//! defines no `Content-*` header in its own namespace, §3.3), so it is taken as the first content
//! header; the message is then marked [`Layout::Errata3013`]. The first line is always read as a
//! CPIM header (a message needs at least one), and a prefixed name such as `x.Content-Type` is a
//! CPIM header in namespace `x`. Output is always the RFC 3862 layout.
//!
//! **Namespaces** (RFC 3862 §3.3.6 NS, §3.4 extensions). `NS: <prefix> <URI>` binds a prefix to a
//! namespace URI; a header `prefix.Name` belongs to that URI. Headers are found by namespace URI
//! and name ([`Cpim::get_ns`]), never by the sender's prefix: `imdn.Message-ID`,
//! `IMDN.Message-ID` and `x.Message-ID` with `NS: x <urn:ietf:params:imdn>` are the same header.
//! RFC 3862 §3.1 makes header names case-sensitive; because clients vary the case of prefixes and
//! names (PROTOCOL-NOTES.md), prefixes and names are matched ASCII case-insensitively, and
//! namespace URIs too (their scheme and the `urn:ietf:params` NID are case-insensitive,
//! RFC 3986 §6.2.2.1, RFC 8141 §3.1). A prefix resolves to the nearest `NS` declaration before the
//! header (a prefix declared only later does not count: a header written before its declaration
//! would otherwise change meaning when [`Cpim::set_ns`] appends one); unprefixed names belong to
//! the default namespace
//! `urn:ietf:params:cpim-headers:` (RFC 3862 §3.3.6) unless an earlier `NS: <URI>` without prefix
//! changed it.
//!
//! **Content-Type.** A non-empty content without a `Content-Type` content header is refused with
//! 415 ([`CpimError::MissingContentType`]): the gateway must know the type of what it relays to
//! check it against the negotiated `a=accept-wrapped-types` (RFC 4975 §8.6) and to decode IMDNs,
//! and RFC 3862 §2 carries a MIME entity whose type MSRP requires (RFC 4975 §7.1); we do not
//! apply MIME's `text/plain` default (RFC 2045 §5.2). An empty content needs no type.
//!
//! Line ends: CRLF (RFC 3862 §3.1); a bare LF is accepted on input. Writing uses CRLF.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};

use super::{Answer, WireError, text};

/// The namespace URI of the RFC 3862 headers (From, To, cc, DateTime, Subject, NS, Require).
pub const NS_CPIM: &str = "urn:ietf:params:cpim-headers:";
/// The IMDN namespace (RFC 5438 §6.1).
pub const NS_IMDN: &str = "urn:ietf:params:imdn";
/// The OMA CPM namespace (OMA CPM 2.0 Conversation Functions, `cpm.Payload-Type`).
pub const NS_CPM: &str = "http://www.openmobilealliance.org/cpm/";

/// Bounds on what [`Cpim::parse_with`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message, headers and content, in bytes. Default 1 MiB: a CPIM-wrapped chat
    /// message or IMDN is far smaller; a large-message-mode body may be bigger and is then
    /// streamed, not parsed whole.
    pub max_size: usize,
    /// Most headers, CPIM and content headers together. Default 64.
    pub max_headers: usize,
    /// Longest header line in bytes, terminator excluded. Default 4 KiB.
    pub max_line_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_size: 1024 * 1024,
            max_headers: 64,
            max_line_len: 4 * 1024,
        }
    }
}

/// What is wrong with a `message/cpim` body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpimError {
    /// Larger than [`Limits::max_size`].
    #[error("CPIM: {size} bytes, over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    /// More headers than [`Limits::max_headers`].
    #[error("CPIM: more than {limit} headers")]
    TooManyHeaders { limit: usize, offset: usize },
    /// A header line longer than [`Limits::max_line_len`].
    #[error("CPIM: header line of {len} bytes, over the limit of {limit}")]
    LineTooLong {
        len: usize,
        limit: usize,
        offset: usize,
    },
    /// A header that does not follow RFC 3862 §3 (or RFC 2045 for content headers).
    #[error("CPIM: {what}")]
    Malformed { what: String, offset: usize },
    /// The input ends inside the CPIM or content headers, with no blank line.
    #[error("CPIM: no blank line after the {section} headers (RFC 3862 §2)")]
    MissingBlankLine {
        section: &'static str,
        offset: usize,
    },
    /// A content without `Content-Type` (see the module documentation).
    #[error("CPIM: the encapsulated content has no Content-Type header")]
    MissingContentType { offset: usize },
}

impl WireError for CpimError {
    fn answer(&self) -> Answer {
        match self {
            // RFC 4975 §10 / RFC 3261 §21.4.11: larger than we process.
            CpimError::TooLarge { .. }
            | CpimError::TooManyHeaders { .. }
            | CpimError::LineTooLong { .. } => Answer::Status(413),
            CpimError::Malformed { .. } | CpimError::MissingBlankLine { .. } => Answer::Status(400),
            // RFC 4975 §10 / RFC 3261 §21.4.13: a media type we cannot handle.
            CpimError::MissingContentType { .. } => Answer::Status(415),
        }
    }

    fn offset(&self) -> Option<usize> {
        match self {
            CpimError::TooLarge { limit, .. } => Some(*limit),
            CpimError::TooManyHeaders { offset, .. }
            | CpimError::LineTooLong { offset, .. }
            | CpimError::Malformed { offset, .. }
            | CpimError::MissingBlankLine { offset, .. }
            | CpimError::MissingContentType { offset } => Some(*offset),
        }
    }
}

/// Which layout the input had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Layout {
    /// CPIM headers, blank line, content headers, blank line, content (RFC 3862 §2).
    #[default]
    Rfc3862,
    /// No blank line between CPIM and content headers (RFC 5438 examples, errata 3013).
    Errata3013,
}

/// One CPIM message header: `[prefix "."] name ":" *(";" param) SP value` (RFC 3862 §3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpimHeader {
    /// The namespace prefix as the sender wrote it (`imdn` in `imdn.Message-ID`).
    pub prefix: Option<Bytes>,
    pub name: Bytes,
    /// The parameters between the colon and the value, as written, leading `;` included
    /// (`;lang=fr`); empty when none.
    pub params: Bytes,
    /// The value, without surrounding white space, escapes not decoded (see [`unescape`]).
    pub value: Bytes,
}

impl CpimHeader {
    /// A header without parameters.
    pub fn new(prefix: Option<&[u8]>, name: &[u8], value: &[u8]) -> CpimHeader {
        CpimHeader {
            prefix: prefix.map(Bytes::copy_from_slice),
            name: Bytes::copy_from_slice(name),
            params: Bytes::new(),
            value: Bytes::copy_from_slice(value),
        }
    }

    /// The value of parameter `name` (`lang` for a Subject's language, RFC 3862 §3.2).
    pub fn param(&self, name: &[u8]) -> Option<&[u8]> {
        self.params
            .split(|b| *b == b';')
            .filter_map(|p| {
                let eq = text::find_byte(b'=', p)?;
                Some((p.get(..eq)?, p.get(eq + 1..)?))
            })
            .find(|(n, _)| text::trim_ws(n).eq_ignore_ascii_case(name))
            .map(|(_, v)| text::trim_ws(v))
    }
}

/// A `Subject` header: its text and language (RFC 3862 §3.3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub lang: Option<Bytes>,
    pub text: Bytes,
}

/// A `From`, `To` or `cc` value: `[Formal-name] "<" URI ">"` (RFC 3862 §3.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The formal name as written (quotes kept).
    pub display: Option<Bytes>,
    pub uri: Bytes,
}

/// A parsed `message/cpim` body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cpim {
    /// CPIM message headers in order.
    pub headers: Vec<CpimHeader>,
    /// MIME headers of the encapsulated content, in order, (name, value).
    pub content_headers: Vec<(Bytes, Bytes)>,
    /// The encapsulated content.
    pub body: Bytes,
    /// The layout of the input (writing is always [`Layout::Rfc3862`]).
    pub layout: Layout,
}

/// One input line: content without terminator, offset of the line, offset after it.
struct LineAt<'a> {
    content: &'a [u8],
    start: usize,
    next: usize,
    /// Whether the line had a terminator (else it ran to the end of the input).
    terminated: bool,
}

fn line_at(input: &[u8], start: usize) -> Option<LineAt<'_>> {
    let rest = input.get(start..)?;
    if rest.is_empty() {
        return None;
    }
    Some(match text::find_byte(b'\n', rest) {
        Some(i) => {
            let raw = rest.get(..i).unwrap_or_default();
            LineAt {
                content: raw.strip_suffix(b"\r").unwrap_or(raw),
                start,
                next: start.saturating_add(i).saturating_add(1),
                terminated: true,
            }
        }
        None => LineAt {
            content: rest,
            start,
            next: input.len(),
            terminated: false,
        },
    })
}

/// RFC 3862 §3.2 NAMECHAR: `%x21 / %x23-27 / %x2a-2b / %x2d / %x5e-60 / %x7c / %x7e / ALPHA /
/// DIGIT` (no `.`, which separates the prefix).
const fn is_namechar(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x27 | 0x2a | 0x2b | 0x2d | 0x5e..=0x60 | 0x7c | 0x7e)
        || b.is_ascii_alphanumeric()
}

/// [`is_namechar`] as a table: it runs for every byte of every header name.
static NAMECHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = is_namechar(i as u8);
        i += 1;
    }
    t
};

fn is_name(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|b| NAMECHAR.get(usize::from(*b)).copied().unwrap_or(false))
}

impl Cpim {
    /// Parse with the default [`Limits`].
    pub fn parse(input: Bytes) -> Result<Cpim, CpimError> {
        Self::parse_with(input, &Limits::default())
    }

    /// Parse a `message/cpim` body within `limits`.
    pub fn parse_with(input: Bytes, limits: &Limits) -> Result<Cpim, CpimError> {
        let mut sink = FullSink {
            input: &input,
            headers: Vec::new(),
            content_headers: Vec::new(),
        };
        let (body, layout) = scan(&input, limits, &mut sink)?;
        Ok(Cpim {
            headers: sink.headers,
            content_headers: sink.content_headers,
            body: input.slice(body.min(input.len())..),
            layout,
        })
    }

    /// What a gateway relaying a message reads of it ([`CpimSummary`]), found in one pass that
    /// checks the body exactly as [`parse_with`](Self::parse_with) does (same errors) but
    /// builds no header lists: no allocation for a message with up to
    /// [`CpimSummary::MAX_NS`] NS declarations (a full parse beyond).
    pub fn summarize_with(input: Bytes, limits: &Limits) -> Result<CpimSummary, CpimError> {
        Ok(Self::summarize_ref_with(&input, limits)?.to_shared(&input))
    }

    /// [`summarize_with`](Self::summarize_with) as slices of `input`: no reference count
    /// taken on it (the translator reads a few values and shares the body it already holds).
    pub fn summarize_ref_with<'a>(
        input: &'a Bytes,
        limits: &Limits,
    ) -> Result<CpimSummaryRef<'a>, CpimError> {
        match summarize_usual(input, limits) {
            Some(summary) => Ok(summary),
            None => Self::summarize_general(input, limits),
        }
    }

    /// [`summarize_ref_with`](Self::summarize_ref_with) by the general reader ([`scan`]):
    /// every body, every error; the reference of [`summarize_usual`].
    fn summarize_general<'a>(
        input: &'a Bytes,
        limits: &Limits,
    ) -> Result<CpimSummaryRef<'a>, CpimError> {
        let mut sink = SummarySink::default();
        let (body, layout) = scan(input, limits, &mut sink)?;
        if sink.overflow {
            let full = Cpim::parse_with(input.clone(), limits)?;
            // The full reading's values are slices of `input` too: the same slices.
            let within = |b: &Bytes| {
                offset_in(input, b)
                    .and_then(|at| input.get(at..at + b.len()))
                    .unwrap_or_default()
            };
            let summary = CpimSummary::of(&full);
            return Ok(CpimSummaryRef {
                content_type: summary.content_type.as_ref().map(within),
                imdn_message_id: summary.imdn_message_id.as_ref().map(within),
                disposition_requested: summary.disposition_requested,
                body: within(&summary.body),
                layout: summary.layout,
            });
        }
        Ok(CpimSummaryRef {
            content_type: sink.content_type,
            imdn_message_id: sink.message_id,
            disposition_requested: sink.disposition,
            body: input.get(body..).unwrap_or_default(),
            layout,
        })
    }

    /// [`summarize_ref_with`](Self::summarize_ref_with) with the default [`Limits`].
    pub fn summarize_ref(input: &Bytes) -> Result<CpimSummaryRef<'_>, CpimError> {
        Self::summarize_ref_with(input, &Limits::default())
    }

    /// [`summarize_with`](Self::summarize_with) with the default [`Limits`].
    pub fn summarize(input: Bytes) -> Result<CpimSummary, CpimError> {
        Self::summarize_with(input, &Limits::default())
    }

    /// Write the message in the RFC 3862 layout with CRLF line ends.
    pub fn to_bytes(&self) -> Bytes {
        let hlen: usize = self
            .headers
            .iter()
            .map(|h| {
                h.prefix.as_ref().map_or(0, |p| p.len() + 1)
                    + h.name.len()
                    + h.params.len()
                    + h.value.len()
                    + 4
            })
            .sum();
        let clen: usize = self
            .content_headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum();
        let mut out = BytesMut::with_capacity(hlen + clen + 4 + self.body.len());
        for h in &self.headers {
            if let Some(p) = &h.prefix {
                out.extend_from_slice(p);
                out.extend_from_slice(b".");
            }
            out.extend_from_slice(&h.name);
            out.extend_from_slice(b":");
            out.extend_from_slice(&h.params);
            out.extend_from_slice(b" ");
            out.extend_from_slice(&h.value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        for (n, v) in &self.content_headers {
            out.extend_from_slice(n);
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out.freeze()
    }

    // ---- namespaces ----

    /// The NS declarations in order: (prefix, URI). `None` prefix = default namespace.
    pub fn namespaces(&self) -> impl Iterator<Item = (Option<Bytes>, Bytes)> + '_ {
        self.headers
            .iter()
            .filter(|h| is_default_ns_header(h, b"NS"))
            .filter_map(|h| parse_ns(&h.value))
    }

    /// The namespace URI header `index` belongs to (see the module documentation).
    pub fn namespace_of(&self, index: usize) -> Option<Bytes> {
        let h = self.headers.get(index)?;
        let matches_prefix = |d: &CpimHeader| -> Option<Bytes> {
            if !is_default_ns_header(d, b"NS") {
                return None;
            }
            let (p, uri) = parse_ns(&d.value)?;
            let same = match (&p, &h.prefix) {
                (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                (None, None) => true,
                _ => false,
            };
            same.then_some(uri)
        };
        let before = self.headers.get(..index).unwrap_or_default();
        let declared = before.iter().rev().find_map(matches_prefix);
        if h.prefix.is_none() {
            // No prefix: the default namespace in force here (RFC 3862 §3.3.6).
            return Some(declared.unwrap_or_else(|| Bytes::from_static(NS_CPIM.as_bytes())));
        }
        declared
    }

    /// Indices of the headers named `name` in namespace `ns_uri`.
    fn ns_indices<'a>(
        &'a self,
        ns_uri: &'a str,
        name: &'a str,
    ) -> impl Iterator<Item = usize> + 'a {
        self.headers
            .iter()
            .enumerate()
            .filter(move |(_, h)| h.name.eq_ignore_ascii_case(name.as_bytes()))
            .filter(move |(i, _)| {
                self.namespace_of(*i)
                    .is_some_and(|u| u.eq_ignore_ascii_case(ns_uri.as_bytes()))
            })
            .map(|(i, _)| i)
    }

    /// The first header `name` of namespace `ns_uri`, whatever prefix the sender used.
    pub fn get_ns(&self, ns_uri: &str, name: &str) -> Option<&CpimHeader> {
        self.ns_indices(ns_uri, name)
            .next()
            .and_then(|i| self.headers.get(i))
    }

    /// Every header `name` of namespace `ns_uri`, in order.
    pub fn get_all_ns<'a>(
        &'a self,
        ns_uri: &'a str,
        name: &'a str,
    ) -> impl Iterator<Item = &'a CpimHeader> + 'a {
        self.ns_indices(ns_uri, name)
            .filter_map(|i| self.headers.get(i))
    }

    /// The prefix a header appended now must use to be in `ns_uri` (`Some(None)`: no prefix),
    /// `None` when no prefix is bound to it at the end of the headers.
    pub fn prefix_for(&self, ns_uri: &str) -> Option<Option<Bytes>> {
        self.bound_prefix_at_end(ns_uri)
    }

    /// A prefix (`None`: no prefix) that, for a header appended at the end, resolves to `ns_uri`:
    /// one whose latest declaration binds it to `ns_uri` (no prefix: the default namespace).
    fn bound_prefix_at_end(&self, ns_uri: &str) -> Option<Option<Bytes>> {
        let mut latest: Vec<(Option<Bytes>, Bytes)> =
            vec![(None, Bytes::from_static(NS_CPIM.as_bytes()))];
        for (p, uri) in self.namespaces() {
            let same = |q: &Option<Bytes>| match (q, &p) {
                (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                (None, None) => true,
                _ => false,
            };
            match latest.iter_mut().find(|(q, _)| same(q)) {
                Some(slot) => slot.1 = uri,
                None => latest.push((p, uri)),
            }
        }
        latest
            .into_iter()
            .find(|(_, u)| u.eq_ignore_ascii_case(ns_uri.as_bytes()))
            .map(|(p, _)| p)
    }

    /// Set header `name` of namespace `ns_uri` to `value`: replaces the first such header and
    /// removes the others, or appends one. Declares `NS: <preferred_prefix> <ns_uri>` first when
    /// the namespace has no prefix yet (an existing prefix is reused).
    pub fn set_ns(&mut self, ns_uri: &str, preferred_prefix: &str, name: &str, value: &[u8]) {
        let existing: Vec<usize> = self.ns_indices(ns_uri, name).collect();
        if let Some((&first, rest)) = existing.split_first() {
            for &i in rest.iter().rev() {
                self.headers.remove(i);
            }
            if let Some(h) = self.headers.get_mut(first) {
                h.value = Bytes::copy_from_slice(value);
                h.params = Bytes::new();
            }
            return;
        }
        let prefix = match self.bound_prefix_at_end(ns_uri) {
            Some(p) => p,
            None => {
                let decl = format!("{preferred_prefix} <{ns_uri}>");
                self.headers
                    .push(CpimHeader::new(None, b"NS", decl.as_bytes()));
                Some(Bytes::copy_from_slice(preferred_prefix.as_bytes()))
            }
        };
        self.headers.push(CpimHeader {
            prefix,
            name: Bytes::copy_from_slice(name.as_bytes()),
            params: Bytes::new(),
            value: Bytes::copy_from_slice(value),
        });
    }

    // ---- typed accessors ----

    /// `From` (RFC 3862 §3.3.1).
    pub fn from(&self) -> Option<&Bytes> {
        self.get_ns(NS_CPIM, "From").map(|h| &h.value)
    }

    /// Every `To` (RFC 3862 §3.3.2).
    pub fn to(&self) -> Vec<&Bytes> {
        self.get_all_ns(NS_CPIM, "To").map(|h| &h.value).collect()
    }

    /// Every `cc` (RFC 3862 §3.3.3).
    pub fn cc(&self) -> Vec<&Bytes> {
        self.get_all_ns(NS_CPIM, "cc").map(|h| &h.value).collect()
    }

    /// `DateTime` (RFC 3862 §3.3.4), as written (RFC 3339).
    pub fn datetime(&self) -> Option<&Bytes> {
        self.get_ns(NS_CPIM, "DateTime").map(|h| &h.value)
    }

    /// Every `Subject`, with its language (RFC 3862 §3.3.5).
    pub fn subject(&self) -> Vec<Subject> {
        self.get_all_ns(NS_CPIM, "Subject")
            .map(|h| Subject {
                lang: h.param(b"lang").map(|l| h.params.slice_ref(l)),
                text: h.value.clone(),
            })
            .collect()
    }

    /// The header names listed by `Require` (RFC 3862 §3.3.7), comma separated.
    pub fn require(&self) -> Vec<Bytes> {
        self.get_all_ns(NS_CPIM, "Require")
            .flat_map(|h| comma_list(&h.value))
            .collect()
    }

    /// The content's `Content-Type`.
    pub fn content_type(&self) -> Option<&Bytes> {
        self.content_header("Content-Type")
    }

    /// A content header by name (ASCII case-insensitive, RFC 2045 §3).
    pub fn content_header(&self, name: &str) -> Option<&Bytes> {
        self.content_headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// `imdn.Message-ID` (RFC 5438 §6.3).
    pub fn imdn_message_id(&self) -> Option<&Bytes> {
        self.get_ns(NS_IMDN, "Message-ID").map(|h| &h.value)
    }

    /// `imdn.Disposition-Notification` values (RFC 5438 §6.2), e.g. `positive-delivery`,
    /// `display`.
    pub fn imdn_disposition_notification(&self) -> Vec<Bytes> {
        self.get_all_ns(NS_IMDN, "Disposition-Notification")
            .flat_map(|h| comma_list(&h.value))
            .collect()
    }

    /// `cpm.Payload-Type` (OMA CPM).
    pub fn cpm_payload_type(&self) -> Option<&Bytes> {
        self.get_ns(NS_CPM, "Payload-Type").map(|h| &h.value)
    }
}

/// The one CPIM reader (RFC 3862 §2, errata 3013): checks `input` within `limits` and hands
/// every header to `sink`; returns where the content starts (the input's length when it has
/// none) and the layout.
fn scan<'a, S: Sink<'a>>(
    input: &'a [u8],
    limits: &Limits,
    sink: &mut S,
) -> Result<(usize, Layout), CpimError> {
    if input.len() > limits.max_size {
        return Err(CpimError::TooLarge {
            size: input.len(),
            limit: limits.max_size,
        });
    }
    if input.is_empty() {
        return Err(CpimError::Malformed {
            what: "empty message, no CPIM headers".into(),
            offset: 0,
        });
    }
    let mut headers = 0usize;
    let mut content_headers = 0usize;
    let mut has_content_type = false;
    let mut layout = Layout::Rfc3862;
    let mut pos = 0usize;
    let count_check = |n: usize, offset: usize| {
        if n >= limits.max_headers {
            Err(CpimError::TooManyHeaders {
                limit: limits.max_headers,
                offset,
            })
        } else {
            Ok(())
        }
    };
    let len_check = |l: &LineAt<'_>| {
        if l.content.len() > limits.max_line_len {
            Err(CpimError::LineTooLong {
                len: l.content.len(),
                limit: limits.max_line_len,
                offset: l.start,
            })
        } else {
            Ok(())
        }
    };

    // CPIM message headers, up to the blank line or the first Content-* header.
    loop {
        // The usual line in one pass ([`usual_header_line`]); any other goes the general way
        // below, which gives the errors.
        if let Some((l, h, full_name)) = usual_header_line(input, pos) {
            len_check(&l)?;
            count_check(headers, l.start)?;
            if headers > 0 && looks_mime(l.content.get(..full_name).unwrap_or_default()) {
                // Errata 3013 layout: the content headers follow without a blank line.
                layout = Layout::Errata3013;
                break;
            }
            sink.cpim_header(h);
            headers += 1;
            pos = l.next;
            continue;
        }
        let Some(l) = line_at(input, pos) else {
            return Err(CpimError::MissingBlankLine {
                section: "CPIM",
                offset: input.len(),
            });
        };
        if l.content.is_empty() {
            if headers == 0 {
                return Err(CpimError::Malformed {
                    what: "no CPIM headers before the blank line".into(),
                    offset: l.start,
                });
            }
            pos = l.next;
            break;
        }
        len_check(&l)?;
        count_check(headers, l.start)?;
        if !l.terminated {
            return Err(CpimError::MissingBlankLine {
                section: "CPIM",
                offset: input.len(),
            });
        }
        let colon = text::find_byte(b':', l.content);
        let name_end = colon.unwrap_or(l.content.len());
        let raw_name = text::trim_ws(l.content.get(..name_end).unwrap_or_default());
        if looks_mime(raw_name) && headers > 0 {
            // Errata 3013 layout: the content headers follow without a blank line.
            layout = Layout::Errata3013;
            break;
        }
        sink.cpim_header(parse_cpim_header(&l, colon)?);
        headers += 1;
        pos = l.next;
    }

    // MIME headers of the content, up to the blank line (or the end: empty content).
    let mut body_start = None;
    let mut last_value_start = pos;
    loop {
        // The usual line in one pass ([`usual_content_line`]); any other the general way.
        if let Some((l, name, value)) = usual_content_line(input, pos) {
            len_check(&l)?;
            count_check(headers.saturating_add(content_headers), l.start)?;
            last_value_start = offset_in(input, value).unwrap_or(l.next);
            has_content_type |= name.eq_ignore_ascii_case(b"Content-Type");
            sink.content_header(name, value);
            content_headers += 1;
            pos = l.next;
            continue;
        }
        let Some(l) = line_at(input, pos) else {
            break;
        };
        if l.content.is_empty() {
            body_start = Some(l.next);
            break;
        }
        len_check(&l)?;
        if text::trim_ws(l.content).is_empty() {
            // Would read as a blank line once the value is trimmed (RFC 5322 §3.2.2: a
            // folded line has something besides white space).
            return Err(CpimError::Malformed {
                what: "content headers: a line of only white space".into(),
                offset: l.start,
            });
        }
        if let (Some(b' ' | b'\t'), true) = (l.content.first().copied(), content_headers > 0) {
            // RFC 5322 §2.2.3 folding: the value runs on, CRLF and white space kept.
            let end = l.start.saturating_add(l.content.len());
            if let Some(v) = input.get(last_value_start..end) {
                sink.fold_content_value(text::trim_ws(v));
            }
            pos = l.next;
            continue;
        }
        count_check(headers.saturating_add(content_headers), l.start)?;
        let Some((name, value)) = text::split_header(l.content) else {
            return Err(CpimError::Malformed {
                what: format!(
                    "content header {:?} is not Name: value",
                    String::from_utf8_lossy(l.content.get(..40).unwrap_or(l.content))
                ),
                offset: l.start,
            });
        };
        if name.iter().any(|b| !b.is_ascii_graphic()) {
            return Err(CpimError::Malformed {
                what: format!(
                    "content header name {:?} has spaces or control characters",
                    String::from_utf8_lossy(name)
                ),
                offset: l.start,
            });
        }
        last_value_start = offset_in(input, value).unwrap_or(l.next);
        has_content_type |= name.eq_ignore_ascii_case(b"Content-Type");
        sink.content_header(name, value);
        content_headers += 1;
        pos = l.next;
        if !l.terminated {
            break;
        }
    }
    // Content headers running to the end of the input: an empty content (lenient).
    let body = body_start.map_or(input.len(), |b| b.min(input.len()));
    if body < input.len() && !has_content_type {
        return Err(CpimError::MissingContentType {
            offset: body_start.unwrap_or(pos),
        });
    }
    Ok((body, layout))
}

/// One CPIM header as read, slices of the input.
struct RawHeader<'a> {
    prefix: Option<&'a [u8]>,
    name: &'a [u8],
    params: &'a [u8],
    value: &'a [u8],
    /// For an `NS` header, its declaration (prefix, URI), read once.
    ns: Option<(Option<&'a [u8]>, &'a [u8])>,
}

/// Where [`scan`] puts what it reads.
trait Sink<'a> {
    /// A CPIM message header, in order.
    fn cpim_header(&mut self, h: RawHeader<'a>);
    /// A content header, in order.
    fn content_header(&mut self, name: &'a [u8], value: &'a [u8]);
    /// The value of the last content header runs on (folding): its whole value now.
    fn fold_content_value(&mut self, value: &'a [u8]);
}

/// The sink of [`Cpim::parse_with`]: every header, as `Bytes` slices.
struct FullSink<'a> {
    input: &'a Bytes,
    headers: Vec<CpimHeader>,
    content_headers: Vec<(Bytes, Bytes)>,
}

impl<'a> Sink<'a> for FullSink<'a> {
    fn cpim_header(&mut self, h: RawHeader<'a>) {
        let input = self.input;
        self.headers.push(CpimHeader {
            prefix: h.prefix.map(|p| input.slice_ref(p)),
            name: input.slice_ref(h.name),
            params: input.slice_ref(h.params),
            value: input.slice_ref(h.value),
        });
    }

    fn content_header(&mut self, name: &'a [u8], value: &'a [u8]) {
        self.content_headers
            .push((self.input.slice_ref(name), self.input.slice_ref(value)));
    }

    fn fold_content_value(&mut self, value: &'a [u8]) {
        if let Some(last) = self.content_headers.last_mut() {
            last.1 = self.input.slice_ref(value);
        }
    }
}

/// What the pager and chat translations read of a CPIM body (see [`Cpim::summarize_with`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpimSummary {
    /// [`Cpim::content_type`].
    pub content_type: Option<Bytes>,
    /// [`Cpim::imdn_message_id`].
    pub imdn_message_id: Option<Bytes>,
    /// Whether [`Cpim::imdn_disposition_notification`] is not empty.
    pub disposition_requested: bool,
    /// The encapsulated content.
    pub body: Bytes,
    /// The layout of the input.
    pub layout: Layout,
}

/// [`CpimSummary`] as slices of the input ([`Cpim::summarize_ref_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpimSummaryRef<'a> {
    /// [`Cpim::content_type`].
    pub content_type: Option<&'a [u8]>,
    /// [`Cpim::imdn_message_id`].
    pub imdn_message_id: Option<&'a [u8]>,
    /// Whether [`Cpim::imdn_disposition_notification`] is not empty.
    pub disposition_requested: bool,
    /// The encapsulated content.
    pub body: &'a [u8],
    /// The layout of the input.
    pub layout: Layout,
}

impl CpimSummaryRef<'_> {
    /// The summary sharing `input`, the buffer these are slices of (a value that is not one
    /// of its slices, which does not happen, is copied).
    pub fn to_shared(&self, input: &Bytes) -> CpimSummary {
        let share = |s: &[u8]| match offset_in(input, s) {
            Some(_) => input.slice_ref(s),
            None => Bytes::copy_from_slice(s),
        };
        CpimSummary {
            content_type: self.content_type.map(share),
            imdn_message_id: self.imdn_message_id.map(share),
            disposition_requested: self.disposition_requested,
            body: share(self.body),
            layout: self.layout,
        }
    }
}

impl CpimSummary {
    /// NS declarations followed without allocating; a body with more is read in full.
    pub const MAX_NS: usize = 8;

    /// The summary of a parsed message.
    pub fn of(c: &Cpim) -> CpimSummary {
        CpimSummary {
            content_type: c.content_type().cloned(),
            imdn_message_id: c.imdn_message_id().cloned(),
            disposition_requested: !c.imdn_disposition_notification().is_empty(),
            body: c.body.clone(),
            layout: c.layout,
        }
    }
}

/// The sink of [`Cpim::summarize_with`]: namespaces resolved as they are declared
/// ([`Cpim::namespace_of`]: the nearest declaration before the header), the few values kept.
#[derive(Default)]
struct SummarySink<'a> {
    ns: [NsDecl<'a>; CpimSummary::MAX_NS],
    ns_len: usize,
    overflow: bool,
    message_id: Option<&'a [u8]>,
    disposition: bool,
    content_type: Option<&'a [u8]>,
    last_is_content_type: bool,
}

impl<'a> SummarySink<'a> {
    /// The namespace URI a header with `prefix` read now belongs to.
    fn namespace(&self, prefix: Option<&[u8]>) -> Option<&'a [u8]> {
        namespace_in(self.ns.get(..self.ns_len).unwrap_or_default(), prefix)
    }
}

/// The namespace URI of a header with `prefix` after the declarations `ns` (in order): the
/// nearest one of its prefix ([`Cpim::namespace_of`]), the default one without a prefix
/// (RFC 3862 §3.3.6).
#[inline]
fn namespace_in<'a>(ns: &[NsDecl<'a>], prefix: Option<&[u8]>) -> Option<&'a [u8]> {
    let declared = ns
        .iter()
        .rev()
        .find(|(p, _)| match (p, prefix) {
            (Some(a), Some(b)) => same_ci(a, b),
            (None, None) => true,
            _ => false,
        })
        .map(|(_, uri)| *uri);
    match (declared, prefix) {
        (None, None) => Some(NS_CPIM.as_bytes()),
        (d, _) => d,
    }
}

/// Whether a header with `prefix` after the declarations `ns` is in the IMDN namespace.
#[inline]
fn is_imdn(ns: &[NsDecl<'_>], prefix: Option<&[u8]>) -> bool {
    // The usual body: one declaration, of the IMDN namespace (RFC 5438 §6.1), whose prefix
    // the header uses as declared; the one declaration `namespace_in` would find.
    if let ([(Some(declared), uri)], Some(p)) = (ns, prefix)
        && p == *declared
        && *uri == NS_IMDN.as_bytes()
    {
        return true;
    }
    namespace_in(ns, prefix).is_some_and(|u| same_ci(u, NS_IMDN.as_bytes()))
}

/// Whether an `imdn.Disposition-Notification` value asks for anything (RFC 5438 §6.2: a
/// comma-separated list; an empty one asks for nothing).
#[inline]
fn asks_disposition(value: &[u8]) -> bool {
    // A token is not empty once trimmed when it has a byte other than SP or HTAB, and tokens
    // are what lies between commas: any byte other than those three asks (the usual value's
    // first byte answers, no split).
    value.iter().any(|b| !matches!(b, b',' | b' ' | b'\t'))
}

/// An NS declaration (RFC 3862 §3.3.6): its prefix, when it has one, and its URI.
type NsDecl<'a> = (Option<&'a [u8]>, &'a [u8]);

/// NS declarations [`summarize_usual`] follows; a body with more is read the general way.
const USUAL_NS: usize = 4;

/// [`Cpim::summarize_ref_with`] of a body of the usual shape, read in one pass without the
/// general reader's plumbing (no line or header records, no sink, only the values the summary
/// keeps trimmed): CPIM header lines `[prefix "."] name ":" value` whose prefix and name are
/// letters, digits and `-` (NAMECHARs, RFC 3862 §3.2), without parameters, at most
/// [`USUAL_NS`] NS declarations (§3.3.6), the blank line (§2) or the first `Content-` header
/// (errata 3013 layout), then unfolded content header lines whose names are letters, digits
/// and `-`; CRLF or LF ends; within `limits`. `None` for any other body and for every body the
/// general reader refuses: the caller reads it the general way ([`scan`]), which gives the
/// same summary for the bodies read here (proptests `usual_summary_is_the_general_one`,
/// `near_usual_bodies_read_as_the_general_reader` and
/// `lines_across_windows_read_as_the_general_reader`). Each line's end is found first
/// ([`text::LineMarks`]), then its name: spelled as the RFCs do, by its first bytes
/// ([`known_name`]), any other by a scan ([`usual_name`]). The headers are counted, and the
/// count checked against `limits` once at the end (over it, `None` all the same).
fn summarize_usual<'a>(input: &'a [u8], limits: &Limits) -> Option<CpimSummaryRef<'a>> {
    if input.len() > limits.max_size {
        return None;
    }
    let mut ns: [NsDecl<'a>; USUAL_NS] = [(None, &[]); USUAL_NS];
    let mut ns_len = 0usize;
    // Whether the declarations so far are RFC 5438 §6.1's one, `NS: imdn <urn:ietf:params:imdn>`
    // as written: then a header prefixed `imdn.` is an IMDN one without a lookup ([`is_imdn`]).
    let mut usual_ns = false;
    let mut message_id = None;
    let mut disposition = false;
    let mut headers = 0usize;
    let mut pos = 0usize;
    let mut layout = Layout::Rfc3862;
    // Where names end (one block at each line's start) and lines end (a kept window of 64
    // classified bytes: each byte of the header section read once for it).
    let mut marks = text::LineMarks::new(input);
    // CPIM message headers, up to the blank line or the first `Content-` header.
    loop {
        // The line's end first: a name has no byte below 14, so the first one from the line's
        // start is the first after its colon, and a line starting with one is the blank line.
        let (end, skip) = marks.line_end(pos)?;
        if end == pos {
            // The blank line ends the headers (RFC 3862 §2), after one header at least; a CR
            // alone or a NUL there is not one this reading takes.
            if headers == 0 || skip == 0 {
                return None;
            }
            pos += skip;
            break;
        }
        // A CR not followed by LF or a NUL in the value (RFC 3862 §3.1), a long line.
        if skip == 0 || end - pos > limits.max_line_len {
            return None;
        }
        // The line's first sixteen bytes: the known names in a compare or two.
        let w = word_at(input, pos);
        let name = match known_name(input, pos, w) {
            Some(name) => name,
            None => usual_name(input, pos)?,
        };
        let colon = pos + name.colon;
        // [`usual_value_end`]: no parameters.
        if !name.spaced && input.get(colon + 1) == Some(&b';') {
            return None;
        }
        // What [`SummarySink::cpim_header`] keeps.
        match name.role {
            Role::Other => {}
            Role::Mime | Role::ContentType => {
                if headers > 0 {
                    // Errata 3013 layout: the content headers follow without a blank line.
                    layout = Layout::Errata3013;
                    break;
                }
            }
            Role::Ns => {
                let decl = trim_value(input.get(colon + 1..end)?);
                let slot = ns.get_mut(ns_len)?;
                // [`parse_ns_raw`], the usual declaration compared once.
                usual_ns = decl == IMDN_NS_DECL;
                *slot = match usual_ns {
                    true => (decl.get(..4), decl.get(6..26)?),
                    false => parse_ns_general(decl)?,
                };
                usual_ns &= ns_len == 0;
                ns_len += 1;
            }
            Role::MessageId | Role::Disposition => {
                // The known `imdn.` prefix after the usual declaration needs no lookup.
                let imdn = (usual_ns && name.known) || {
                    let prefix = match name.dot {
                        Some(d) => Some(input.get(pos..pos + d)?),
                        None => None,
                    };
                    is_imdn(ns.get(..ns_len)?, prefix)
                };
                if imdn {
                    let value = input.get(colon + 1..end)?;
                    if name.role == Role::MessageId {
                        if message_id.is_none() {
                            message_id = Some(trim_value(value));
                        }
                    } else if !disposition {
                        disposition = asks_disposition(trim_value(value));
                    }
                }
            }
        }
        headers += 1;
        pos = end + skip;
    }
    // Content headers, up to the blank line (or the end: an empty content).
    let mut content_type = None;
    let mut has_content_type = false;
    let mut count = headers;
    let body = loop {
        let Some((end, skip)) = marks.line_end(pos) else {
            // The end of the input (an empty content), or a last line without an end.
            if pos >= input.len() {
                break input.len();
            }
            return None;
        };
        if end == pos {
            // The blank line before the content, or a line this reading does not take (a CR
            // alone, NUL).
            if skip == 0 {
                return None;
            }
            break pos + skip;
        }
        // [`usual_content_line`] of a name of letters, digits and `-`.
        let w = word_at(input, pos);
        let (colon, is_type) = match known_name(input, pos, w) {
            Some(NameAt {
                dot: None,
                colon,
                role,
                ..
            }) => (pos + colon, role == Role::ContentType),
            Some(_) => return None,
            None => {
                let colon = text::alnum_dash_end(input, pos);
                if colon == pos || input.get(colon) != Some(&b':') {
                    return None;
                }
                let name = input.get(pos..colon)?;
                (colon, same_name(name, b"Content-Type"))
            }
        };
        // The line ends at the first LF (a CR or NUL before it is part of the value): the
        // first CR, LF or NUL is usually it or the CR of CRLF, with no CR before it.
        let (raw_end, next) = match skip {
            0 => {
                let nl = end + text::find_byte(b'\n', input.get(end..)?)?;
                let raw = input.get(colon + 1..nl)?;
                (
                    colon + 1 + raw.strip_suffix(b"\r").unwrap_or(raw).len(),
                    nl + 1,
                )
            }
            _ => (end, end + skip),
        };
        if raw_end - pos > limits.max_line_len {
            return None;
        }
        if is_type {
            has_content_type = true;
            if content_type.is_none() {
                content_type = Some(trim_value(input.get(colon + 1..raw_end)?));
            }
        }
        count += 1;
        pos = next;
    };
    // Counted, not checked line by line: a body over the limit is read the general way.
    if count > limits.max_headers {
        return None;
    }
    if body < input.len() && !has_content_type {
        return None;
    }
    Some(CpimSummaryRef {
        content_type,
        imdn_message_id: message_id,
        disposition_requested: disposition,
        body: input.get(body..)?,
        layout,
    })
}

/// [`text::trim_ws`] of a header value, the usual one (RFC 3862 §3.2 `Header-name ":" SP
/// Header-value`: one space before it, none after) seen by its first two bytes and its last:
/// no loop.
#[inline(always)]
fn trim_value(v: &[u8]) -> &[u8] {
    // A byte above SP is neither SP nor HTAB; any other reads the general way.
    if let [b' ', rest @ ..] = v
        && let ([first, ..], [.., last]) = (rest, rest)
        && *first > b' '
        && *last > b' '
    {
        return rest;
    }
    text::trim_ws(v)
}

/// The sixteen bytes of `input` at `at` as a little-endian word, zeros past its end (no
/// name, line end or blank line the readers compare with has a NUL).
#[inline(always)]
fn word_at(input: &[u8], at: usize) -> u128 {
    // One compare of `at + 16` with the length (no slice of the rest made first).
    match input
        .get(at..at.wrapping_add(16))
        .and_then(|w| w.first_chunk::<16>())
    {
        Some(w) => u128::from_le_bytes(*w),
        None => {
            let rest = input.get(at..).unwrap_or_default();
            let mut w = [0u8; 16];
            if let Some(head) = w.get_mut(..rest.len()) {
                head.copy_from_slice(rest);
            }
            u128::from_le_bytes(w)
        }
    }
}

/// What [`summarize_usual`] does with a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Nothing kept.
    Other,
    /// `NS` without a prefix (RFC 3862 §3.3.6).
    Ns,
    /// `Message-ID`, kept when in the IMDN namespace (RFC 5438 §6.3).
    MessageId,
    /// `Disposition-Notification` (RFC 5438 §6.2), likewise.
    Disposition,
    /// `Content-*` without a prefix: a content header in the CPIM headers (errata 3013).
    Mime,
    /// `Content-Type`: a [`Role::Mime`] the content headers keep.
    ContentType,
}

/// A header name at the start of a line as [`summarize_usual`] reads it: where its `.` (when
/// it has a prefix) and its `:` are, from the line's start.
#[derive(Clone, Copy)]
struct NameAt {
    dot: Option<usize>,
    colon: usize,
    role: Role,
    /// Spelled as the RFCs do ([`known_name`]): the prefix, if any, is `imdn`.
    known: bool,
    /// The colon is followed by a space: no parameters (RFC 3862 §3.2).
    spaced: bool,
}

/// A word of up to sixteen ASCII bytes, little-endian, zero padded, and the mask of its
/// bytes.
const fn lit(s: &[u8]) -> (u128, u128) {
    let (mut word, mut mask, mut shift) = (0u128, 0u128, 0u32);
    let mut rest = s;
    while let [b, tail @ ..] = rest {
        if shift < 128 {
            word |= (*b as u128) << shift;
            mask |= 0xff << shift;
        }
        shift += 8;
        rest = tail;
    }
    (word, mask)
}

/// The names of the usual messages spelled as RFC 3862 §3.3, RFC 5438 §6 and RFC 2045 write
/// them, found by the first sixteen bytes of their line (`w`): no name scan, no case-blind
/// compare. `None` for any other name ([`usual_name`] reads it): the same reading.
#[inline(always)]
fn known_name(input: &[u8], pos: usize, w: u128) -> Option<NameAt> {
    // With the space after the colon when it is in the sixteen bytes: no parameters then.
    const FROM: (u128, u128) = lit(b"From: ");
    const TO: (u128, u128) = lit(b"To: ");
    const NS: (u128, u128) = lit(b"NS: ");
    const DATE: (u128, u128) = lit(b"DateTime: ");
    const MESSAGE_ID: (u128, u128) = lit(b"imdn.Message-ID:");
    const DISPOSITION: (u128, u128) = lit(b"imdn.Disposition");
    // `imdn.Disposition-Notification:` from its byte 14.
    const NOTIFICATION: (u128, u128) = lit(b"on-Notification:");
    const CONTENT_TYPE: (u128, u128) = lit(b"Content-Type: ");
    const CONTENT_LENGTH: (u128, u128) = lit(b"Content-Length:");
    let is = |l: (u128, u128)| w & l.1 == l.0;
    let name = |colon, dot, role, spaced| {
        Some(NameAt {
            dot,
            colon,
            role,
            known: true,
            spaced,
        })
    };
    // The first two bytes pick the candidates.
    match w as u16 {
        0x7246 /* Fr */ if is(FROM) => name(4, None, Role::Other, true),
        0x6f54 /* To */ if is(TO) => name(2, None, Role::Other, true),
        0x534e /* NS */ if is(NS) => name(2, None, Role::Ns, true),
        0x6144 /* Da */ if is(DATE) => name(8, None, Role::Other, true),
        0x6d69 /* im */ if is(MESSAGE_ID) => name(15, Some(4), Role::MessageId, false),
        0x6d69 /* im */ if is(DISPOSITION) && word_at(input, pos + 14) == NOTIFICATION.0 => {
            name(29, Some(4), Role::Disposition, false)
        }
        0x6f43 /* Co */ if is(CONTENT_TYPE) => name(12, None, Role::ContentType, true),
        0x6f43 /* Co */ if is(CONTENT_LENGTH) => name(14, None, Role::Mime, false),
        _ => None,
    }
}

/// The name at `pos` as [`usual_header_line`] reads it, its NAMECHARs letters, digits and `-`
/// (RFC 3862 §3.2), at most one `.`, then `:`; `None` for any other. Out of line: the usual
/// names are [`known_name`]s, and the reader's loop keeps its registers.
#[inline(never)]
fn usual_name(input: &[u8], pos: usize) -> Option<NameAt> {
    let run = text::alnum_dash_end(input, pos);
    let (dot, colon) = match input.get(run) {
        Some(b':') => (None, run),
        Some(b'.') => (Some(run), text::alnum_dash_end(input, run + 1)),
        _ => return None,
    };
    if colon == pos
        || input.get(colon) != Some(&b':')
        || dot.is_some_and(|d| d == pos || d + 1 == colon)
    {
        return None;
    }
    let full = input.get(pos..colon)?;
    let (prefix, name) = match dot {
        Some(d) => (Some(input.get(pos..d)?), input.get(d + 1..colon)?),
        None => (None, full),
    };
    let role = match name.len() {
        _ if looks_mime(full) => Role::Mime,
        2 if prefix.is_none() && name.eq_ignore_ascii_case(b"NS") => Role::Ns,
        10 if same_name(name, b"Message-ID") => Role::MessageId,
        24 if same_name(name, b"Disposition-Notification") => Role::Disposition,
        _ => Role::Other,
    };
    Some(NameAt {
        dot: dot.map(|d| d - pos),
        colon: colon - pos,
        role,
        known: false,
        spaced: false,
    })
}

impl<'a> Sink<'a> for SummarySink<'a> {
    fn cpim_header(&mut self, h: RawHeader<'a>) {
        if h.ns.is_some() {
            match (h.ns, self.ns.get_mut(self.ns_len)) {
                (Some(decl), Some(slot)) => {
                    *slot = decl;
                    self.ns_len += 1;
                }
                (Some(_), None) => self.overflow = true,
                // Refused by the reader before it gets here.
                (None, _) => {}
            }
        }
        let imdn = |s: &Self| {
            s.namespace(h.prefix)
                .is_some_and(|u| same_ci(u, NS_IMDN.as_bytes()))
        };
        if self.message_id.is_none() && same_ci(h.name, b"Message-ID") && imdn(self) {
            self.message_id = Some(h.value);
        }
        if !self.disposition && same_ci(h.name, b"Disposition-Notification") && imdn(self) {
            self.disposition = asks_disposition(h.value);
        }
    }

    fn content_header(&mut self, name: &'a [u8], value: &'a [u8]) {
        self.last_is_content_type = false;
        if self.content_type.is_none() && name.eq_ignore_ascii_case(b"Content-Type") {
            self.content_type = Some(value);
            self.last_is_content_type = true;
        }
    }

    fn fold_content_value(&mut self, value: &'a [u8]) {
        if self.last_is_content_type {
            self.content_type = Some(value);
        }
    }
}

/// ASCII case-insensitive equality, the exact compare first (names and namespace URIs are
/// usually written as the RFCs spell them).
#[inline]
fn same_ci(a: &[u8], b: &[u8]) -> bool {
    a == b || a.eq_ignore_ascii_case(b)
}

/// [`same_ci`] of a name of ASCII letters, digits and `-` (as [`summarize_usual`] reads
/// them) and such a literal, eight bytes a compare: setting bit 5 of every byte lowers a
/// letter and changes no digit nor `-`, and no two of these bytes differing otherwise are
/// made equal (a digit or `-` with bit 5 clear is a control byte).
#[inline]
fn same_name(name: &[u8], lit: &[u8]) -> bool {
    const FOLD: u64 = 0x2020_2020_2020_2020;
    let word = |s: &[u8], at: usize| {
        s.get(at..)
            .and_then(|w| w.first_chunk::<8>())
            .map(|w| u64::from_le_bytes(*w) | FOLD)
    };
    let len = lit.len();
    if name.len() != len {
        return false;
    }
    if len < 8 {
        return name.iter().zip(lit).all(|(a, b)| a | 0x20 == b | 0x20);
    }
    // Whole words, then the last eight bytes (overlapping the one before).
    let mut at = 0;
    while at + 8 < len {
        if word(name, at) != word(lit, at) {
            return false;
        }
        at += 8;
    }
    word(name, len - 8) == word(lit, len - 8)
}

fn is_default_ns_header(h: &CpimHeader, name: &[u8]) -> bool {
    h.prefix.is_none() && h.name.eq_ignore_ascii_case(name)
}

fn comma_list(v: &Bytes) -> Vec<Bytes> {
    v.split(|b| *b == b',')
        .map(text::trim_ws)
        .filter(|t| !t.is_empty())
        .map(|t| v.slice_ref(t))
        .collect()
}

/// `NS` value: `[Name-prefix SP] "<" URI ">"` (RFC 3862 §3.3.6). (prefix, URI).
pub fn parse_ns(v: &Bytes) -> Option<(Option<Bytes>, Bytes)> {
    let (prefix, uri) = parse_ns_raw(v)?;
    Some((prefix.map(|p| v.slice_ref(p)), v.slice_ref(uri)))
}

/// The IMDN namespace declaration as RFC 5438 §6.1 writes it (and clients copy it).
const IMDN_NS_DECL: &[u8] = b"imdn <urn:ietf:params:imdn>";

/// [`parse_ns`] on slices.
#[inline]
fn parse_ns_raw(v: &[u8]) -> Option<(Option<&[u8]>, &[u8])> {
    // The usual declaration read at once (the general reading of it, test
    // `usual_ns_is_the_general_reading`): ~200 instructions of searches and checks saved.
    if v == IMDN_NS_DECL {
        return Some((v.get(..4), v.get(6..26)?));
    }
    parse_ns_general(v)
}

/// [`parse_ns_raw`] of any value.
fn parse_ns_general(v: &[u8]) -> Option<(Option<&[u8]>, &[u8])> {
    let lt = text::find_byte(b'<', v)?;
    let prefix = text::trim_ws(v.get(..lt)?);
    let rest = v.get(lt + 1..)?;
    let gt = text::find_byte(b'>', rest)?;
    let uri = text::trim_ws(rest.get(..gt)?);
    if uri.is_empty() || !text::trim_ws(rest.get(gt + 1..)?).is_empty() {
        return None;
    }
    if !prefix.is_empty() && !is_name(prefix) {
        return None;
    }
    Some(((!prefix.is_empty()).then_some(prefix), uri))
}

/// `From`/`To`/`cc` value: `[Formal-name] "<" URI ">"` (RFC 3862 §3.3.1).
pub fn parse_address(v: &Bytes) -> Option<Address> {
    let lt = text::rfind_byte(b'<', v)?;
    let rest = v.get(lt + 1..)?;
    let gt = text::find_byte(b'>', rest)?;
    let uri = text::trim_ws(rest.get(..gt)?);
    if uri.is_empty() {
        return None;
    }
    let display = text::trim_ws(v.get(..lt)?);
    Some(Address {
        display: (!display.is_empty()).then(|| v.slice_ref(display)),
        uri: v.slice_ref(uri),
    })
}

/// Decode RFC 3862 §3.2 escapes in a header value: `\\`, `\"`, `\'`, `\b`, `\t`, `\n`, `\r`
/// and `\uXXXX` (UTF-8 encoded). A backslash not followed by one of these is kept as is.
pub fn unescape(v: &[u8]) -> Cow<'_, [u8]> {
    if text::find_byte(b'\\', v).is_none() {
        return Cow::Borrowed(v);
    }
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0usize;
    while let Some(&b) = v.get(i) {
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let simple = match v.get(i + 1) {
            Some(b'\\') => Some(b'\\'),
            Some(b'"') => Some(b'"'),
            Some(b'\'') => Some(b'\''),
            Some(b'b') => Some(0x08),
            Some(b't') => Some(b'\t'),
            Some(b'n') => Some(b'\n'),
            Some(b'r') => Some(b'\r'),
            _ => None,
        };
        if let Some(c) = simple {
            out.push(c);
            i += 2;
            continue;
        }
        let hex = v
            .get(i + 1..i + 6)
            .filter(|h| h.first() == Some(&b'u'))
            .and_then(|h| std::str::from_utf8(h.get(1..)?).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .and_then(char::from_u32);
        match hex {
            Some(c) => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                i += 6;
            }
            None => {
                out.push(b'\\');
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

/// Encode a value for a CPIM header (RFC 3862 §3.2): backslash, double quote and control
/// characters are escaped.
pub fn escape(v: &[u8]) -> Cow<'_, [u8]> {
    if !v
        .iter()
        .any(|b| *b == b'\\' || *b == b'"' || b.is_ascii_control())
    {
        return Cow::Borrowed(v);
    }
    let mut out = Vec::with_capacity(v.len() + 8);
    for &b in v {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            0x08 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            c if c.is_ascii_control() => {
                out.extend_from_slice(format!("\\u{c:04x}").as_bytes());
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Whether a header name as written (prefix included) starts with `Content-`: a MIME header
/// of the content (errata 3013 layout).
#[inline]
fn looks_mime(full_name: &[u8]) -> bool {
    // One compare of the eight bytes as a word: setting bit 5 of the first seven lowers an
    // upper-case letter and makes no other byte a lower-case one; the `-` is compared as is
    // (bit 5 set would also make CR one).
    const FOLD: u64 = 0x0020_2020_2020_2020;
    full_name
        .first_chunk::<8>()
        .is_some_and(|p| u64::from_le_bytes(*p) | FOLD == u64::from_le_bytes(*b"content-"))
}

/// The line at `start` when it is a CPIM header of the usual shape, read in one pass: NAMECHARs
/// with at most one `.` (RFC 3862 §3.2: `[Name-prefix "."] Header-name`), `:`, no parameters,
/// a value with no CR or NUL, then CRLF or LF; `NS` values well formed (§3.3.6). `None` for any
/// other line, which [`parse_cpim_header`] reads (and refuses with its errors): the same
/// reading as it gives this one. With the length of the name as written (prefix included).
/// Where the value `after` a usual header's colon ends, and the length of its line end;
/// `None` for what the usual readers leave to the general one: parameters (`;` first) and a
/// CR that is not the one of CRLF (RFC 3862 §3.1).
#[inline]
fn usual_value_end(after: &[u8]) -> Option<(usize, usize)> {
    if after.first() == Some(&b';') {
        return None;
    }
    let end = text::find_line_end(after)?;
    let skip = match after.get(end) {
        Some(b'\n') => 1,
        Some(b'\r') if after.get(end + 1) == Some(&b'\n') => 2,
        _ => return None,
    };
    Some((end, skip))
}

#[inline]
fn usual_header_line(input: &[u8], start: usize) -> Option<(LineAt<'_>, RawHeader<'_>, usize)> {
    let rest = input.get(start..)?;
    let mut dot = None;
    let mut i = 0usize;
    let colon = loop {
        // Letters, digits and `-` (NAMECHARs, RFC 3862 §3.2) a word at a time; any other byte
        // one at a time.
        i += text::alnum_dash_run(rest.get(i..)?);
        let b = *rest.get(i)?;
        if !NAMECHAR.get(usize::from(b)).copied().unwrap_or(false) {
            match b {
                b'.' if dot.is_none() && i > 0 => dot = Some(i),
                b':' if i > 0 && dot.is_none_or(|d| d + 1 < i) => break i,
                _ => return None,
            }
        }
        i += 1;
    };
    let after = rest.get(colon + 1..)?;
    let (end, skip) = usual_value_end(after)?;
    let raw_value = after.get(..end)?;
    let content = rest.get(..colon + 1 + end)?;
    let (prefix, name) = match dot {
        Some(d) => (Some(rest.get(..d)?), rest.get(d + 1..colon)?),
        None => (None, rest.get(..colon)?),
    };
    let value = text::trim_ws(raw_value);
    let ns = match prefix.is_none() && name.eq_ignore_ascii_case(b"NS") {
        false => None,
        true => Some(parse_ns_raw(value)?),
    };
    let line = LineAt {
        content,
        start,
        next: start.saturating_add(colon + 1 + end + skip),
        terminated: true,
    };
    let header = RawHeader {
        prefix,
        name,
        params: raw_value.get(..0)?,
        value,
        ns,
    };
    Some((line, header, colon))
}

/// The line at `start` when it is a content header of the usual shape, read in one pass: not
/// folded, `Name:` with a name of visible characters, the value up to CRLF or LF. With the
/// name and the trimmed value. `None` for any other line, which the general reading of [`scan`]
/// takes (and refuses with its errors): the same reading as it gives this one.
#[inline]
fn usual_content_line(input: &[u8], start: usize) -> Option<(LineAt<'_>, &[u8], &[u8])> {
    let rest = input.get(start..)?;
    // The letters, digits and `-` of the name a word at a time (all visible, none a colon).
    let run = text::alnum_dash_run(rest);
    let colon = run
        + rest
            .get(run..)?
            .iter()
            .position(|b| !b.is_ascii_graphic() || *b == b':')?;
    if colon == 0 || rest.get(colon) != Some(&b':') {
        return None;
    }
    let after = rest.get(colon + 1..)?;
    let nl = text::find_byte(b'\n', after)?;
    let raw = after.get(..nl)?;
    let raw_value = raw.strip_suffix(b"\r").unwrap_or(raw);
    let line = LineAt {
        content: rest.get(..colon + 1 + raw_value.len())?,
        start,
        next: start.saturating_add(colon + 1 + nl + 1),
        terminated: true,
    };
    Some((line, rest.get(..colon)?, text::trim_ws(raw_value)))
}

/// One CPIM header line (RFC 3862 §3.2).
/// `colon`: where the first `:` of the line is, when it has one.
fn parse_cpim_header<'a>(l: &LineAt<'a>, colon: Option<usize>) -> Result<RawHeader<'a>, CpimError> {
    let bad = |what: String| CpimError::Malformed {
        what,
        offset: l.start,
    };
    let shown = || String::from_utf8_lossy(l.content.get(..60).unwrap_or(l.content)).into_owned();
    let colon = colon.ok_or_else(|| bad(format!("header line {:?} has no colon", shown())))?;
    let full_name = text::trim_ws(l.content.get(..colon).unwrap_or_default());
    let (prefix, name) = match text::find_byte(b'.', full_name) {
        Some(dot) => (
            Some(full_name.get(..dot).unwrap_or_default()),
            full_name.get(dot + 1..).unwrap_or_default(),
        ),
        None => (None, full_name),
    };
    if !is_name(name) || prefix.is_some_and(|p| !is_name(p)) {
        return Err(bad(format!(
            "header name {:?} is not [prefix.]Name (RFC 3862 §3.2)",
            String::from_utf8_lossy(full_name)
        )));
    }
    let rest = l.content.get(colon + 1..).unwrap_or_default();
    // `*( ";" Parameter ) SP Header-value`: parameters run to the first space.
    let (params, value) = if rest.first() == Some(&b';') {
        let sp = rest
            .iter()
            .position(|b| *b == b' ' || *b == b'\t')
            .unwrap_or(rest.len());
        (
            rest.get(..sp).unwrap_or_default(),
            rest.get(sp..).unwrap_or_default(),
        )
    } else {
        (&rest[..0], rest)
    };
    if text::find_byte2(b'\r', 0, value).is_some() {
        return Err(bad(format!(
            "header {:?} has a control character in its value",
            String::from_utf8_lossy(full_name)
        )));
    }
    let value = text::trim_ws(value);
    // Every NS header must be `[prefix SP] "<" URI ">"` (RFC 3862 §3.3.6).
    let ns = match prefix.is_none() && name.eq_ignore_ascii_case(b"NS") {
        false => None,
        true => Some(parse_ns_raw(value).ok_or_else(|| {
            bad(format!(
                "NS header {:?} is not [prefix] <URI> (RFC 3862 §3.3.6)",
                String::from_utf8_lossy(value)
            ))
        })?),
    };
    Ok(RawHeader {
        prefix,
        name,
        params,
        value,
        ns,
    })
}

/// Where `inner`, a sub-slice of `outer`, starts in it.
fn offset_in(outer: &[u8], inner: &[u8]) -> Option<usize> {
    let off = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    (off.checked_add(inner.len())? <= outer.len()).then_some(off)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC3862: &[u8] = b"From: MR SANDERS <im:piglet@100akerwood.com>\r\n\
To: Depressed Donkey <im:eeyore@100akerwood.com>\r\n\
DateTime: 2000-12-13T13:40:00-08:00\r\n\
Subject: the weather will be fine today\r\n\
Subject:;lang=fr beau temps prevu pour aujourd'hui\r\n\
NS: MyFeatures <mid:MessageFeatures@id.foo.com>\r\n\
Require: MyFeatures.VitalMessageOption\r\n\
MyFeatures.VitalMessageOption: Confirmation-requested\r\n\
MyFeatures.WackyMessageOption: Use-silly-font\r\n\
\r\n\
Content-type: text/xml; charset=utf-8\r\n\
Content-ID: <1234567890@foo.com>\r\n\
\r\n\
<body>\r\n\
Here is the text of my message.\r\n\
</body>\r\n";

    const ERRATA: &[u8] = b"From: Alice <im:alice@example.com>\r\n\
To: Bob <im:bob@example.com>\r\n\
NS: imdn <urn:ietf:params:imdn>\r\n\
imdn.Message-ID: 34jk324j\r\n\
DateTime: 2006-04-04T12:16:49-05:00\r\n\
imdn.Disposition-Notification: positive-delivery, display\r\n\
Content-type: text/plain\r\n\
Content-length: 12\r\n\
\r\n\
Hello World\r\n";

    fn parse(b: &'static [u8]) -> Result<Cpim, CpimError> {
        Cpim::parse(Bytes::from_static(b))
    }

    #[test]
    fn rfc3862_example_round_trips_byte_for_byte() {
        let c = parse(RFC3862).unwrap();
        assert_eq!(c.layout, Layout::Rfc3862);
        assert_eq!(c.headers.len(), 9);
        assert_eq!(c.content_headers.len(), 2);
        assert_eq!(c.to_bytes(), RFC3862);
        assert_eq!(c.from().unwrap(), "MR SANDERS <im:piglet@100akerwood.com>");
        let subj = c.subject();
        assert_eq!(subj.len(), 2);
        assert_eq!(subj[1].lang.as_deref(), Some(&b"fr"[..]));
        assert_eq!(subj[1].text, "beau temps prevu pour aujourd'hui");
        assert_eq!(
            c.require(),
            vec![Bytes::from_static(b"MyFeatures.VitalMessageOption")]
        );
        assert_eq!(c.content_type().unwrap(), "text/xml; charset=utf-8");
        let h = c
            .get_ns("mid:MessageFeatures@id.foo.com", "WackyMessageOption")
            .unwrap();
        assert_eq!(h.value, "Use-silly-font");
        assert_eq!(
            c.body,
            "<body>\r\nHere is the text of my message.\r\n</body>\r\n"
        );
        let a = parse_address(c.to()[0]).unwrap();
        assert_eq!(a.uri, "im:eeyore@100akerwood.com");
        assert_eq!(a.display.unwrap(), "Depressed Donkey");
    }

    #[test]
    fn errata_layout_is_read_and_written_correctly() {
        let c = parse(ERRATA).unwrap();
        assert_eq!(c.layout, Layout::Errata3013);
        assert_eq!(c.headers.len(), 6);
        assert_eq!(c.content_headers.len(), 2);
        assert_eq!(c.imdn_message_id().unwrap(), "34jk324j");
        assert_eq!(
            c.imdn_disposition_notification(),
            vec![
                Bytes::from_static(b"positive-delivery"),
                Bytes::from_static(b"display")
            ]
        );
        assert_eq!(c.body, "Hello World\r\n");
        let out = c.to_bytes();
        let again = Cpim::parse(out.clone()).unwrap();
        assert_eq!(again.layout, Layout::Rfc3862);
        assert_eq!(
            Cpim {
                layout: Layout::Errata3013,
                ..again
            },
            c
        );
        assert!(out.windows(4).any(|w| w == b"\r\n\r\n"));
    }

    #[test]
    fn errata_rule_only_for_unprefixed_content_headers_after_the_first_line() {
        let c = parse(b"Content-Type: odd\r\nNS: x <mid:x>\r\nx.Content-Type: cpim\r\ncontent-type: text/plain\r\n\r\nhi").unwrap();
        assert_eq!(c.layout, Layout::Errata3013);
        assert_eq!(c.headers.len(), 3);
        assert_eq!(c.get_ns("mid:x", "Content-Type").unwrap().value, "cpim");
        assert_eq!(c.content_type().unwrap(), "text/plain");
        assert_eq!(c.body, "hi");
    }

    #[test]
    fn namespaces_resolve_by_uri_not_prefix() {
        let c = parse(b"From: <sip:a@x>\r\nNS: IM <URN:ietf:params:imdn>\r\nim.message-id: abc\r\nNS: cpm <http://www.openmobilealliance.org/cpm/>\r\ncpm.Payload-Type: Application/X-CPM-FT\r\n\r\nContent-Type: text/plain\r\n\r\nhi").unwrap();
        assert_eq!(c.imdn_message_id().unwrap(), "abc");
        assert_eq!(c.cpm_payload_type().unwrap(), "Application/X-CPM-FT");
        assert_eq!(c.namespace_of(0).unwrap(), NS_CPIM);
        assert_eq!(c.namespace_of(2).unwrap(), "URN:ietf:params:imdn");
        // An undeclared prefix resolves to nothing.
        let c = parse(b"From: <sip:a@x>\r\nimdn.Message-ID: abc\r\n\r\n").unwrap();
        assert_eq!(c.imdn_message_id(), None);
        assert_eq!(c.namespace_of(1), None);
    }

    #[test]
    fn set_ns_reuses_or_declares_the_prefix() {
        let mut c =
            parse(b"From: <sip:a@x>\r\nNS: i <urn:ietf:params:imdn>\r\ni.Message-ID: old\r\n\r\n")
                .unwrap();
        c.set_ns(NS_IMDN, "imdn", "Message-ID", b"new");
        c.set_ns(NS_IMDN, "imdn", "Disposition-Notification", b"display");
        c.set_ns(NS_CPM, "cpm", "Payload-Type", b"Application/X-CPM-Session");
        c.set_ns(NS_CPIM, "", "DateTime", b"2026-11-25T10:00:00Z");
        assert_eq!(
            c.to_bytes(),
            &b"From: <sip:a@x>\r\nNS: i <urn:ietf:params:imdn>\r\ni.Message-ID: new\r\ni.Disposition-Notification: display\r\nNS: cpm <http://www.openmobilealliance.org/cpm/>\r\ncpm.Payload-Type: Application/X-CPM-Session\r\nDateTime: 2026-11-25T10:00:00Z\r\n\r\n\r\n"[..]
        );
        assert_eq!(Cpim::parse(c.to_bytes()).unwrap(), c);
    }

    #[test]
    fn set_ns_does_not_reuse_a_rebound_prefix() {
        let mut c = parse(b"From: <sip:a@x>\r\nNS: i <urn:ietf:params:imdn>\r\nNS: i <mid:other>\r\nNS: <mid:default>\r\n\r\n").unwrap();
        c.set_ns(NS_IMDN, "imdn", "Message-ID", b"m1");
        c.set_ns(NS_CPIM, "cpim", "DateTime", b"2026-11-25T10:00:00Z");
        let again = Cpim::parse(c.to_bytes()).unwrap();
        assert_eq!(again.imdn_message_id().unwrap(), "m1");
        assert_eq!(again.datetime().unwrap(), "2026-11-25T10:00:00Z");
        assert_eq!(
            again.get_ns(NS_CPIM, "DateTime").unwrap().prefix.as_deref(),
            Some(&b"cpim"[..])
        );
        assert_eq!(again.from().unwrap(), "<sip:a@x>");
        assert_eq!(again.namespace_of(4).unwrap(), "mid:default");
    }

    #[test]
    fn prefix_declared_after_use_does_not_count() {
        // Found by fuzzing: set_ns appended `NS: imdn` and the earlier undeclared
        // `imdn.Message-ID` then resolved forward to it.
        let mut c = parse(
            b"From: <sip:a@x>\r\nimdn.Message-ID: early\r\nNS: imdn <urn:ietf:params:imdn>\r\n\r\n",
        )
        .unwrap();
        assert_eq!(c.imdn_message_id(), None);
        c.set_ns(NS_IMDN, "imdn", "Message-ID", b"late");
        let again = Cpim::parse(c.to_bytes()).unwrap();
        assert_eq!(again.imdn_message_id().unwrap(), "late");
        assert_eq!(again.namespace_of(1), None);
    }

    #[test]
    fn content_type_missing_is_415_but_empty_content_is_fine() {
        let e = parse(b"From: <sip:a@x>\r\n\r\nContent-ID: <x>\r\n\r\nbody").unwrap_err();
        assert_eq!(e.answer(), Answer::Status(415));
        let c = parse(b"From: <sip:a@x>\r\n\r\n\r\n").unwrap();
        assert!(c.body.is_empty() && c.content_headers.is_empty());
        let c = parse(b"From: <sip:a@x>\r\n\r\nContent-Type: text/plain\r\n").unwrap();
        assert!(c.body.is_empty());
    }

    #[test]
    fn malformed_input_says_what_and_where() {
        let e = parse(b"From x\r\n\r\n").unwrap_err();
        assert_eq!(e.answer(), Answer::Status(400));
        assert!(e.to_string().contains("no colon"), "{e}");
        let e = parse(b"From <sip:a@x>\r\n\r\n").unwrap_err();
        assert!(e.to_string().contains("From <sip"), "{e}");
        let e = parse(b"From: <sip:a@x>\r\nTo: <sip:b@x>\r\n").unwrap_err();
        assert!(
            matches!(
                e,
                CpimError::MissingBlankLine {
                    section: "CPIM",
                    ..
                }
            ),
            "{e:?}"
        );
        let e = parse(b"From: <sip:a@x>\r\na.b.c: x\r\n\r\n").unwrap_err();
        assert!(e.to_string().contains("a.b.c"), "{e}");
        assert_eq!(e.offset(), Some(17));
        let e = parse(b"From: <sip:a@x>\r\nNS: imdn urn:ietf:params:imdn\r\n\r\n").unwrap_err();
        assert!(e.to_string().contains("NS header"), "{e}");
        let e = parse(b"From: <sip:a@x>\r\n\r\nnot a header\r\n\r\n").unwrap_err();
        assert!(e.to_string().contains("content header"), "{e}");
        let e = parse(b"\r\n\r\n").unwrap_err();
        assert!(e.to_string().contains("no CPIM headers"), "{e}");
        // Content headers up to the end of the input: empty content, accepted.
        let c = parse(b"From: <sip:a@x>\r\n\r\nContent-Type: text/plain\r\nX: y").unwrap();
        assert!(c.body.is_empty());
        assert!(parse(b"").is_err());
    }

    #[test]
    fn limits_give_413() {
        let lim = Limits {
            max_headers: 3,
            ..Limits::default()
        };
        let e = Cpim::parse_with(Bytes::from_static(RFC3862), &lim).unwrap_err();
        assert!(matches!(e, CpimError::TooManyHeaders { .. }));
        assert_eq!(e.answer(), Answer::Status(413));
        let lim = Limits {
            max_line_len: 20,
            ..Limits::default()
        };
        assert!(matches!(
            Cpim::parse_with(Bytes::from_static(RFC3862), &lim),
            Err(CpimError::LineTooLong { .. })
        ));
        let lim = Limits {
            max_size: 10,
            ..Limits::default()
        };
        assert!(matches!(
            Cpim::parse_with(Bytes::from_static(RFC3862), &lim),
            Err(CpimError::TooLarge { .. })
        ));
    }

    #[test]
    fn lf_only_and_folded_content_headers() {
        let c =
            parse(b"From: <sip:a@x>\n\nContent-Type: text/plain;\n charset=utf-8\n\nhi\n").unwrap();
        assert_eq!(c.content_type().unwrap(), "text/plain;\n charset=utf-8");
        assert_eq!(c.body, "hi\n");
        let again = Cpim::parse(c.to_bytes()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn whitespace_only_line_in_content_headers_is_refused() {
        let e = parse(b"From: x\r\n\r\nA: b\r\n \r\n\r\nbody").unwrap_err();
        assert_eq!(e.answer(), Answer::Status(400));
        assert_eq!(e.offset(), Some(17));
    }

    #[test]
    fn escapes_decode_and_encode() {
        assert_eq!(
            &*unescape(br#"a\"b\\c\u00e9\t\x"#),
            "a\"b\\c\u{e9}\t\\x".as_bytes()
        );
        assert_eq!(&*unescape(b"\\u12"), b"\\u12");
        assert_eq!(&*escape(b"a\"b\\\n"), br#"a\"b\\\n"#);
        assert_eq!(&*unescape(&escape(b"x\x01y")), b"x\x01y");
    }

    #[test]
    fn params_and_values() {
        let c = parse(b"Subject:;lang=de;x=1 Hallo Welt\r\nX:no-space\r\n\r\n").unwrap();
        let h = &c.headers[0];
        assert_eq!(h.params, ";lang=de;x=1");
        assert_eq!(h.param(b"x"), Some(&b"1"[..]));
        assert_eq!(h.value, "Hallo Welt");
        assert_eq!(c.headers[1].value, "no-space");
        assert_eq!(
            c.to_bytes(),
            &b"Subject:;lang=de;x=1 Hallo Welt\r\nX: no-space\r\n\r\n\r\n"[..]
        );
    }

    /// The summary agrees with the full parse, errors included.
    fn same_summary(input: &[u8]) {
        let b = Bytes::copy_from_slice(input);
        let full = Cpim::parse(b.clone()).map(|c| CpimSummary::of(&c));
        assert_eq!(
            Cpim::summarize(b),
            full,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }

    #[test]
    fn summary_reads_what_the_full_parse_reads() {
        for input in [
            RFC3862,
            ERRATA,
            b"From: <sip:a@x>\r\nNS: IM <URN:ietf:params:imdn>\r\nim.message-id: abc\r\nNS: cpm <http://www.openmobilealliance.org/cpm/>\r\ncpm.Payload-Type: x\r\n\r\nContent-Type: text/plain\r\n\r\nhi",
            b"From: <sip:a@x>\r\nimdn.Message-ID: early\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: late\r\nimdn.Disposition-Notification: , \r\n\r\n",
            b"From: <sip:a@x>\r\nNS: i <urn:ietf:params:imdn>\r\nNS: i <mid:other>\r\ni.Message-ID: no\r\nNS: <urn:ietf:params:imdn>\r\nMessage-ID: yes\r\nDisposition-Notification: display\r\n\r\n",
            b"From: <sip:a@x>\n\nContent-Type: text/plain;\n charset=utf-8\nContent-type: other\n\nhi\n",
            b"From: <sip:a@x>\r\n\r\nContent-ID: <x>\r\n\r\nbody",
            b"From: x\r\nContent-Type: a\r\n folded\r\n",
            b"From: <sip:a@x>\r\nNS: imdn urn:ietf:params:imdn\r\n\r\n",
        ] {
            same_summary(input);
        }
        // More NS declarations than the summary follows: read in full, same answer.
        let mut many = b"From: <sip:a@x>\r\n".to_vec();
        for i in 0..CpimSummary::MAX_NS + 2 {
            many.extend_from_slice(format!("NS: p{i} <mid:{i}>\r\n").as_bytes());
        }
        many.extend_from_slice(
            b"NS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: m\r\n\r\nContent-Type: t\r\n\r\nx",
        );
        same_summary(&many);
        assert_eq!(
            Cpim::summarize(Bytes::from(many))
                .unwrap()
                .imdn_message_id
                .unwrap(),
            "m"
        );
    }

    proptest::proptest! {
        #[test]
        fn summary_matches_full_parse_on_any_input(
            lines in proptest::collection::vec(
                "(From: <sip:a@x>|NS: (imdn |i |IMDN )?<(urn:ietf:params:imdn|mid:x)>|(imdn\\.|i\\.|x\\.)?(Message-ID|Disposition-Notification|message-id): (a|, ?|display)|Content-(Type|ID): t|  folded|x|)",
                0..12,
            ),
            crlf in proptest::bool::ANY,
        ) {
            let eol = if crlf { "\r\n" } else { "\n" };
            let input = lines.join(eol) + eol + "body";
            same_summary(input.as_bytes());
        }
    }

    /// The summary as offsets into `input` (the slices must be of it: the pager slices the
    /// body it holds with them).
    type Placed = (
        Option<(usize, usize)>,
        Option<(usize, usize)>,
        bool,
        (usize, usize),
        Layout,
    );

    fn placed(input: &[u8], s: &CpimSummaryRef<'_>) -> Placed {
        let at = |v: &[u8]| (offset_in(input, v).expect("a slice of the input"), v.len());
        (
            s.content_type.map(at),
            s.imdn_message_id.map(at),
            s.disposition_requested,
            at(s.body),
            s.layout,
        )
    }

    /// The one-pass summary of `input` is the general reader's under each of `limits`.
    fn reads_as_general(
        input: &[u8],
        limits: &[Limits],
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        for limits in limits {
            let b = Bytes::copy_from_slice(input);
            let read = Cpim::summarize_ref_with(&b, limits).map(|s| placed(&b, &s));
            let general = Cpim::summarize_general(&b, limits).map(|s| placed(&b, &s));
            proptest::prop_assert_eq!(read, general, "{:?}", String::from_utf8_lossy(input));
        }
        Ok(())
    }

    /// Whether the one-pass summary reads `input`; when it does, it reads what the general
    /// reader reads (the same slices of the input).
    fn usual_is_general(input: &[u8], limits: &Limits) -> bool {
        let b = Bytes::copy_from_slice(input);
        let Some(usual) = summarize_usual(&b, limits) else {
            return false;
        };
        let general = Cpim::summarize_general(&b, limits);
        assert_eq!(
            Ok(placed(&b, &usual)),
            general.map(|g| placed(&b, &g)),
            "{:?}",
            String::from_utf8_lossy(input)
        );
        true
    }

    /// Limits small enough for the generated bodies to cross them.
    const SMALL: Limits = Limits {
        max_size: 120,
        max_headers: 4,
        max_line_len: 24,
    };

    #[test]
    fn usual_bodies_take_the_one_pass_summary() {
        let pager = b"From: <sip:+15557654321@ims.example.net>\r\nTo: <sip:+15551234567@ims.example.net>\r\nDateTime: 2026-11-25T10:00:00.000Z\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: Kn31x9Ab7Qz\r\nimdn.Disposition-Notification: positive-delivery, display\r\n\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: 27\r\n\r\nHello from the CPM network!";
        for input in [
            &pager[..],
            b"From: <sip:a@x>\nNS: IM <URN:ietf:params:imdn>\nim.message-id: abc\nIM.Disposition-Notification: , \nim.disposition-notification: display\n\nContent-type: t\n\nhi",
            b"From: <sip:a@x>\r\n\r\n",
            b"From: <sip:a@x>\r\n\r\nContent-ID: <x>\r\n",
            b"NS: <urn:ietf:params:imdn>\r\nMessage-ID: m\r\n\r\nContent-Type: t\r\n\r\n",
        ] {
            assert!(
                usual_is_general(input, &Limits::default()),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let vectors = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/cpim");
        for name in [
            "ours-cpm-chat.txt",
            "ours-alias-prefix.txt",
            "rfc5438-7.1-imdn-request.txt",
            "rfc5438-7.2-delivery-notification.txt",
        ] {
            let input = std::fs::read(format!("{vectors}/{name}")).unwrap();
            assert!(usual_is_general(&input, &Limits::default()), "{name}");
        }
        assert!(usual_is_general(ERRATA, &Limits::default()));
        // Left to the general reader: parameters, other NAMECHARs, folding,
        // more NS declarations than followed, limits, errors.
        let mut many_ns = b"From: <sip:a@x>\r\n".to_vec();
        for i in 0..=USUAL_NS {
            many_ns.extend_from_slice(format!("NS: p{i} <mid:{i}>\r\n").as_bytes());
        }
        many_ns.extend_from_slice(b"\r\nContent-Type: t\r\n\r\nx");
        for input in [
            RFC3862,
            b"From: x\r\nContent-Type:;p t\r\n\r\n",
            b"Subject:;lang=de x\r\n\r\n",
            b"X_Y: z\r\n\r\n",
            b"From: x\r\n\r\nContent-Type: a\r\n folded\r\n\r\n",
            b"From: x\r\n\r\nContent-Type: a",
            b"\r\nFrom: x\r\n\r\n",
            b"From: x\r\n\r\nbody without a type",
            b"From: x\ry\r\n\r\n",
            b"NS: nothing\r\n\r\n",
            b"From: x",
            b"",
            &many_ns,
        ] {
            let b = Bytes::copy_from_slice(input);
            assert!(
                summarize_usual(&b, &Limits::default()).is_none(),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert!(!usual_is_general(pager, &SMALL));
    }

    #[test]
    fn usual_ns_is_the_general_reading() {
        let (prefix, uri) = parse_ns_raw(IMDN_NS_DECL).unwrap();
        assert_eq!(Some((prefix, uri)), parse_ns_general(IMDN_NS_DECL));
        assert_eq!((prefix, uri), (Some(&b"imdn"[..]), NS_IMDN.as_bytes()));
    }

    /// The generated bodies of `usual_summary_is_the_general_one` often take the one-pass
    /// summary (the proptest checks something).
    #[test]
    fn generated_bodies_take_the_one_pass_summary() {
        use proptest::strategy::{Strategy, ValueTree};
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let lines = proptest::collection::vec(
            "(From: <sip:a@x>|NS: (imdn |i )?<urn:ietf:params:imdn>|(imdn\\.|i\\.)?(Message-ID|Disposition-Notification): (a|display)|Content-Type: t|)",
            1..8,
        );
        let (mut usual, mut all) = (0, 0);
        for _ in 0..1000 {
            let input = lines.new_tree(&mut runner).unwrap().current().join("\r\n") + "\r\n";
            all += 1;
            usual += usize::from(usual_is_general(input.as_bytes(), &Limits::default()));
        }
        assert!(usual * 5 > all, "{usual} of {all}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]
        // A body the one-pass summary reads is read the same by the general reader, under the
        // default limits and under limits the bodies cross.
        #[test]
        fn usual_summary_is_the_general_one(
            lines in proptest::collection::vec(
                (
                    "(From: <sip:a@x>|To: <sip:b@y>|DateTime: 2026|NS: (imdn |i |IMDN |x.y |)<(urn:ietf:params:imdn|URN:IETF:params:imdn|mid:x)>( x)?|(imdn\\.|i\\.|x\\.|\\.|I\\.)?(Message-ID|Disposition-Notification|message-id|NS|Content-Type)(:| :|:;p) ?(a|, ?|display| )?|Content-(Type|ID|Length)(: | :)t|  folded|x[_!]?|[a-z.:; \t\r\x00\n]{0,3}|)",
                    0..3usize,
                ),
                0..12,
            ),
            body in "(|hi|\r\n|x\x00y)",
        ) {
            let mut input = String::new();
            for (line, end) in &lines {
                input.push_str(line);
                input.push_str(["\r\n", "\n", "\r\n"][*end]);
            }
            input.push_str(&body);
            usual_is_general(input.as_bytes(), &Limits::default());
            usual_is_general(input.as_bytes(), &SMALL);
        }
    }

    /// The pager benchmark's CPIM headers (tests/vectors/sip/cpm-pager-message.txt).
    const PAGER_HEADERS: [(&str, &str); 6] = [
        ("From", "<sip:+15557654321@ims.example.net>"),
        ("To", "<sip:+15551234567@ims.example.net>"),
        ("DateTime", "2026-11-25T10:00:00.000Z"),
        ("NS", "imdn <urn:ietf:params:imdn>"),
        ("imdn.Message-ID", "Kn31x9Ab7Qz"),
        (
            "imdn.Disposition-Notification",
            "positive-delivery, display",
        ),
    ];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]
        // The pager body and bodies near it (headers reordered or left out, names in other
        // cases, white space added, LF ends, long values, bytes that are not UTF-8): what
        // `summarize_ref_with` reads (one pass or general) is the general reading, errors
        // included, under the default limits and under limits the bodies cross.
        #[test]
        fn near_usual_bodies_read_as_the_general_reader(
            order in proptest::strategy::Strategy::prop_shuffle(
                proptest::strategy::Just((0..6usize).collect::<Vec<_>>()),
            ),
            keep in proptest::collection::vec(proptest::bool::weighted(0.9), 6),
            case in proptest::collection::vec(0..3u8, 6),
            space in proptest::collection::vec("( |\t| \t|)", 12),
            lf in proptest::collection::vec(proptest::bool::weighted(0.3), 12),
            long in proptest::collection::vec(proptest::prop_oneof![0..2usize, 0..90usize], 6),
            content in "(Content-Type: text/plain;charset=UTF-8|content-type: t|CONTENT-TYPE:x|Content-Length: 27|Content-Type:;a t)",
            blank in proptest::bool::weighted(0.9),
            junk in proptest::option::weighted(
                0.3,
                (proptest::prelude::any::<usize>(), proptest::collection::vec(proptest::prelude::any::<u8>(), 1..4)),
            ),
        ) {
            let mut input = Vec::new();
            let mut line = 0usize;
            let mut eol = |input: &mut Vec<u8>| {
                let end: &[u8] = if lf.get(line) == Some(&true) { b"\n" } else { b"\r\n" };
                input.extend_from_slice(end);
                line += 1;
            };
            for &i in &order {
                let (Some(&(name, value)), Some(true)) = (PAGER_HEADERS.get(i), keep.get(i).copied()) else {
                    continue;
                };
                let name = match case.get(i) {
                    Some(1) => name.to_ascii_lowercase(),
                    Some(2) => name.to_ascii_uppercase(),
                    _ => name.to_owned(),
                };
                input.extend_from_slice(name.as_bytes());
                input.extend_from_slice(b": ");
                input.extend_from_slice(space.get(i).map_or("", |s| s.as_str()).as_bytes());
                input.extend_from_slice(value.as_bytes());
                input.extend(std::iter::repeat_n(b'v', long.get(i).copied().unwrap_or(0)));
                input.extend_from_slice(space.get(i + 6).map_or("", |s| s.as_str()).as_bytes());
                eol(&mut input);
            }
            if blank {
                eol(&mut input);
            }
            input.extend_from_slice(content.as_bytes());
            eol(&mut input);
            input.extend_from_slice(b"Content-Length: 27");
            eol(&mut input);
            eol(&mut input);
            input.extend_from_slice(b"Hello from the CPM network!");
            if let Some((at, bytes)) = junk {
                let at = at % (input.len() + 1);
                input.splice(at..at, bytes);
            }
            let medium = Limits { max_line_len: 60, max_headers: 8, ..Limits::default() };
            reads_as_general(&input, &[Limits::default(), SMALL, medium])?;
        }
    }

    /// Bodies whose blank line falls on and around the 16- and 64-byte blocks the reader loads
    /// (offsets 15/16/17, 63/64/65, ...), and names whose `:` falls around the end of the
    /// first sixteen bytes (those [`known_name`] compares): the one-pass reading is the general
    /// one, errors included.
    #[test]
    fn block_boundaries_read_as_the_general_reader() {
        let medium = Limits {
            max_line_len: 60,
            max_headers: 8,
            ..Limits::default()
        };
        let check = |input: &[u8]| {
            for limits in [Limits::default(), SMALL, medium] {
                let b = Bytes::copy_from_slice(input);
                let read = Cpim::summarize_ref_with(&b, &limits).map(|s| placed(&b, &s));
                let general = Cpim::summarize_general(&b, &limits).map(|s| placed(&b, &s));
                assert_eq!(read, general, "{:?}", String::from_utf8_lossy(input));
            }
        };
        for eol in ["\r\n", "\n"] {
            for blank_at in (8..=20usize).chain(60..=68).chain(126..=130) {
                for first in ["From: ", "NS: ", "imdn.Message-ID: ", "x-y.Zz: "] {
                    let mut input = Vec::new();
                    if blank_at >= 40 {
                        input.extend_from_slice(b"To: <sip:a@b>");
                        input.extend_from_slice(eol.as_bytes());
                    }
                    let pad = blank_at.saturating_sub(input.len() + first.len() + eol.len());
                    input.extend_from_slice(first.as_bytes());
                    input.extend(std::iter::repeat_n(b'v', pad));
                    input.extend_from_slice(eol.as_bytes());
                    let at = input.len();
                    for tail in [
                        "",
                        "\r\n",
                        "\n",
                        "\nContent-Type: t\n\nbody",
                        "\r\nContent-Type: t\r\n\r\nbody",
                        "\r\nContent-Type: t\r\n",
                        "\r\nContent-Length: 1\r\n\r\nb",
                        "\r",
                        "\x00\r\n",
                    ] {
                        let mut body = input.clone();
                        body.extend_from_slice(tail.as_bytes());
                        check(&body);
                        // A CR, LF, NUL or `;` just before the blank line or just after it.
                        for (k, byte) in [(1usize, b'\r'), (1, 0), (1, b';'), (0, b'\n')] {
                            let mut odd = body.clone();
                            if let Some(i) = at.checked_sub(eol.len() + k) {
                                odd.insert(i, byte);
                                check(&odd);
                            }
                        }
                    }
                }
            }
        }
        // A `;` (parameters, refused by the one-pass reading) or other byte right after the
        // `:` of names of every length around sixteen.
        for len in 1..=20 {
            for after in [";", " ;", ":", "", "\r", "\x00"] {
                let name = "n".repeat(len);
                for prefixed in [false, true] {
                    let name = if prefixed {
                        format!("p.{name}")
                    } else {
                        name.clone()
                    };
                    let input = format!("{name}:{after}v\r\n\r\nContent-Type: t\r\n\r\nb");
                    check(input.as_bytes());
                    let short = format!("{name}:{after}");
                    check(short.as_bytes());
                }
            }
        }
    }

    /// Every line end of the usual body at every offset around the 64-byte windows the line
    /// ends are found in (a CRLF split across two windows, a lone CR or LF, a NUL or a tab
    /// before the end, the end of a short body inside the first window): the one-pass
    /// reading is the general one, errors included.
    #[test]
    fn line_ends_across_windows_read_as_the_general_reader() {
        let ends = ["\r\n", "\n", "\r", "\x00\r\n", "\r\r\n", "\t\r\n", " \r\n"];
        for pad in 0..140usize {
            for (k, eol) in ends.iter().enumerate() {
                // The odd end on one line at a time, CRLF on the others.
                for odd in 0..5 {
                    let e = |line: usize| if line == odd { *eol } else { "\r\n" };
                    let mut input = format!("From: <{}>{}", "v".repeat(pad), e(0));
                    input.push_str(&format!("NS: imdn <urn:ietf:params:imdn>{}", e(1)));
                    input.push_str(&format!("imdn.Message-ID: {}{}", "m".repeat(k), e(2)));
                    input.push_str(&format!("{}Content-Type: t{}", e(3), e(4)));
                    for tail in ["\r\nbody", "", "\r\n"] {
                        let mut body = input.clone();
                        body.push_str(tail);
                        let b = Bytes::from(body.clone());
                        for limits in [Limits::default(), SMALL] {
                            let read =
                                Cpim::summarize_ref_with(&b, &limits).map(|s| placed(&b, &s));
                            let general =
                                Cpim::summarize_general(&b, &limits).map(|s| placed(&b, &s));
                            assert_eq!(read, general, "{body:?}");
                        }
                    }
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]
        // Bodies of the usual shape whose lines fall anywhere on the 64-byte windows the line
        // ends are found in: values of any length (a line in one window, across one or two
        // edges), CRLF, bare LF, a CR alone, a NUL or tab in a value, a `;` after the colon,
        // known names with and without the space, other names, many headers (over the
        // limits too). What `summarize_ref_with` reads is the general reading, errors included.
        #[test]
        fn lines_across_windows_read_as_the_general_reader(
            lines in proptest::collection::vec(
                (
                    proptest::prop_oneof![
                        40 => proptest::sample::select(vec![
                            "From: ", "From:", "To: ", "DateTime: ", "NS: ", "imdn.Message-ID: ",
                            "imdn.Disposition-Notification: ", "Subject: ", "x.Y-z: ",
                            "Content-Type: ", "Content-Length: ", "NS:",
                        ]),
                        1 => proptest::sample::select(vec![
                            "imdn.Message-ID:;", "Content-Type:;", "From:;", "X_Y: ", "\tFrom: ", " ",
                        ]),
                    ],
                    0usize..150,
                    proptest::option::weighted(0.02, (0usize..200, proptest::sample::select(b"\r\x00\t\n;".to_vec()))),
                    proptest::prop_oneof![
                        40 => proptest::strategy::Just("\r\n"),
                        10 => proptest::strategy::Just("\n"),
                        1 => proptest::sample::select(vec!["\r", "\r\r\n", ""]),
                    ],
                ),
                0..24,
            ),
            blank in proptest::prop_oneof![
                10 => proptest::strategy::Just("\r\n"),
                2 => proptest::strategy::Just("\n"),
                1 => proptest::sample::select(vec!["", "\r"]),
            ],
            content in proptest::collection::vec(
                (
                    proptest::prop_oneof![
                        20 => proptest::sample::select(vec!["Content-Type: ", "Content-Length: ", "x-y: ", "content-type:"]),
                        1 => proptest::strategy::Just("\t"),
                    ],
                    0usize..100,
                    proptest::prop_oneof![
                        20 => proptest::sample::select(vec!["\r\n", "\n"]),
                        1 => proptest::sample::select(vec!["\r", "\r\r\n"]),
                    ],
                ),
                0..4,
            ),
            body in "(|\r\nhi|\nhi|\r\n|x)",
        ) {
            let mut input = Vec::new();
            for (name, len, odd, end) in &lines {
                input.extend_from_slice(name.as_bytes());
                let at = input.len();
                match *name {
                    "NS: " | "NS:" => input.extend_from_slice(b"imdn <urn:ietf:params:imdn>"),
                    _ => input.extend(std::iter::repeat_n(b'v', *len)),
                }
                if let Some((k, byte)) = odd {
                    let k = at + k % (input.len() - at + 1);
                    input.insert(k, *byte);
                }
                input.extend_from_slice(end.as_bytes());
            }
            input.extend_from_slice(blank.as_bytes());
            for (name, len, end) in &content {
                input.extend_from_slice(name.as_bytes());
                input.extend(std::iter::repeat_n(b't', *len));
                input.extend_from_slice(end.as_bytes());
            }
            input.extend_from_slice(body.as_bytes());
            let medium = Limits { max_line_len: 100, max_headers: 12, ..Limits::default() };
            let few = Limits { max_headers: 3, ..Limits::default() };
            reads_as_general(&input, &[Limits::default(), SMALL, medium, few])?;
        }
    }

    /// Bodies of many long lines (each line end in a later window than its start) and of many
    /// headers take the one-pass reading, and read as the general reader does.
    #[test]
    fn long_lines_and_many_headers_take_the_one_pass_summary() {
        for (lines, len) in [(1, 200), (6, 70), (6, 130), (30, 10), (64, 1), (63, 0)] {
            for eol in ["\r\n", "\n"] {
                let mut input = String::new();
                for k in 0..lines {
                    let name = ["From", "To", "DateTime", "Subject", "x.Y"][k % 5];
                    input.push_str(&format!("{name}: {}{eol}", "v".repeat(len)));
                }
                input.push_str(&format!("{eol}Content-Type: t{eol}{eol}body"));
                let limits = Limits::default();
                let fits = lines < limits.max_headers;
                assert_eq!(
                    usual_is_general(input.as_bytes(), &limits),
                    fits,
                    "{input:?}"
                );
            }
        }
    }

    #[test]
    fn trim_value_is_trim_ws() {
        // Every string of up to six bytes of SP, HTAB, `a`, CR and 0xe9.
        let alphabet = [b' ', b'\t', b'a', b'\r', 0xe9];
        for len in 0..=6u32 {
            for n in 0..5usize.pow(len) {
                let s: Vec<u8> = (0..len).map(|k| alphabet[n / 5usize.pow(k) % 5]).collect();
                let (got, want) = (trim_value(&s), text::trim_ws(&s));
                assert_eq!(got, want, "{s:?}");
                assert_eq!(got.as_ptr(), want.as_ptr(), "{s:?}");
            }
        }
    }

    #[test]
    fn known_names_are_the_usual_reading() {
        let usual_role = |r| match r {
            Role::ContentType => Role::Mime,
            r => r,
        };
        for line in [
            "From: x\r\n",
            "To: x\r\n",
            "DateTime: x\r\n",
            "NS: x\r\n",
            "imdn.Message-ID: x\r\n",
            "imdn.Disposition-Notification: x\r\n",
            "Content-Type: x\r\n",
            "Content-Length: x\r\n",
        ] {
            let input = line.as_bytes();
            let known = known_name(input, 0, word_at(input, 0)).expect(line);
            let usual = usual_name(input, 0).expect(line);
            // A name said to be followed by a space is (no parameters to look for).
            assert!(
                !known.spaced || input.get(known.colon + 1) == Some(&b' '),
                "{line}"
            );
            assert_eq!(
                (known.dot, known.colon, usual_role(known.role)),
                (usual.dot, usual.colon, usual.role),
                "{line}"
            );
        }
        for line in [
            "From ",
            "Fro",
            "To",
            "NS",
            "DateTimes:",
            "DateTime",
            "imdn.Message-Id:",
            "imdn.Disposition-Notificatio:",
            "Content-Typ:",
            "content-Type:",
            "NS;",
            "NS:",
            "From:x",
            "To:;p x",
            "",
        ] {
            assert!(
                known_name(line.as_bytes(), 0, word_at(line.as_bytes(), 0)).is_none(),
                "{line}"
            );
        }
    }

    /// The general reading of the line at 0: (content, next, prefix, name, params, value, ns,
    /// name as written).
    type Reading<'a> = (
        &'a [u8],
        usize,
        Option<&'a [u8]>,
        &'a [u8],
        &'a [u8],
        &'a [u8],
        Option<(Option<&'a [u8]>, &'a [u8])>,
        &'a [u8],
    );

    fn general_reading(input: &[u8]) -> Option<Reading<'_>> {
        let l = line_at(input, 0)?;
        if l.content.is_empty() || !l.terminated {
            return None;
        }
        let colon = text::find_byte(b':', l.content);
        let h = parse_cpim_header(&l, colon).ok()?;
        let full = text::trim_ws(l.content.get(..colon?)?);
        Some((
            l.content, l.next, h.prefix, h.name, h.params, h.value, h.ns, full,
        ))
    }

    fn usual_reading(input: &[u8]) -> Option<Reading<'_>> {
        let (l, h, n) = usual_header_line(input, 0)?;
        Some((
            l.content,
            l.next,
            h.prefix,
            h.name,
            h.params,
            h.value,
            h.ns,
            l.content.get(..n)?,
        ))
    }

    proptest::proptest! {
        // A line the one-pass reader takes is read as the general reader reads it (same
        // slices), and every line the general reader takes without parameters, with a plain
        // name and a clean CRLF or LF end, the one-pass reader takes too.
        #[test]
        fn usual_line_is_the_general_reading(
            line in "(x|NS|Content-|a\\.|\\.|\\.\\.|[-!~_a-zA-Z0-9]|[ \t:;<>\r\n\\x00\\x7f]|\u{e9}|imdn <urn:x>| <mid:y> ){0,10}",
        ) {
            let usual = usual_reading(line.as_bytes());
            if usual.is_some() {
                proptest::prop_assert_eq!(usual, general_reading(line.as_bytes()));
            }
        }
    }

    proptest::proptest! {
        // A content line the one-pass reader takes is read as the general reader reads it.
        #[test]
        fn usual_content_line_is_the_general_reading(
            line in "(Content-Type|x|[-!~_a-zA-Z0-9]|[ \t:;<>\r\n\\x00\\x7f]|\u{e9}| text/plain){0,10}",
        ) {
            let input = line.as_bytes();
            if let Some((l, name, value)) = usual_content_line(input, 0) {
                let g = line_at(input, 0).unwrap();
                proptest::prop_assert_eq!((l.content, l.next, l.terminated), (g.content, g.next, g.terminated));
                proptest::prop_assert!(!g.content.is_empty());
                proptest::prop_assert!(!matches!(g.content.first(), Some(b' ' | b'\t')));
                let (gn, gv) = text::split_header(g.content).unwrap();
                proptest::prop_assert_eq!((name, value), (gn, gv));
                proptest::prop_assert!(gn.iter().all(u8::is_ascii_graphic));
            }
        }
    }

    #[test]
    fn usual_lines_take_the_one_pass_reader() {
        for line in [
            &b"From: <sip:a@x>\r\nrest"[..],
            b"imdn.Message-ID: 34jk324j\n",
            b"NS: imdn <urn:ietf:params:imdn>\r\n",
            b"Content-x.Foo: bar\r\n",
            b"a:\r\n",
            b"a:  x \t\r\n",
        ] {
            let usual = usual_reading(line);
            assert!(usual.is_some(), "{line:?}");
            assert_eq!(usual, general_reading(line), "{line:?}");
        }
        for line in [
            &b"a.b.c: x\r\n"[..],
            b".a: x\r\n",
            b"a.: x\r\n",
            b": x\r\n",
            b"a :x\r\n",
            b"a:;p x\r\n",
            b"a: x\ry\r\n",
            b"a: x\0\r\n",
            b"a: x",
            b"NS: x\r\n",
            b"\r\n",
        ] {
            assert_eq!(usual_reading(line), None, "{line:?}");
        }
    }

    #[test]
    fn same_name_is_same_ci_for_names() {
        // Names of letters of both cases, digits and `-` near the literals the reader
        // compares with (case flipped, cut, longer, a byte changed): the folded compare is
        // the case-blind one.
        let lits: [&[u8]; 4] = [
            b"Content-Type",
            b"Message-ID",
            b"Disposition-Notification",
            b"NS",
        ];
        let alphabet = b"aAzZ09-mM";
        for lit in lits {
            for n in 0..2000usize {
                // The literal with some bytes changed or its case flipped, and other lengths.
                let mut name = lit.to_vec();
                let k = n % (lit.len() + 1);
                match n / (lit.len() + 1) % 4 {
                    0 => name
                        .iter_mut()
                        .for_each(|b| *b ^= 0x20 * u8::from(b.is_ascii_alphabetic())),
                    1 => name.truncate(k),
                    2 => name.push(alphabet[n % alphabet.len()]),
                    _ => {
                        if let Some(b) = name.get_mut(k) {
                            *b = alphabet[n / 7 % alphabet.len()];
                        }
                    }
                }
                assert_eq!(same_name(&name, lit), same_ci(&name, lit), "{name:?}");
            }
        }
        assert!(same_name(b"CONTENT-type", b"Content-Type"));
        assert!(!same_name(b"Content-Typf", b"Content-Type"));
        assert!(!same_name(
            b"Disposition-Notificatiom",
            b"Disposition-Notification"
        ));
        assert!(!same_name(b"Message-I", b"Message-ID"));
        assert!(same_name(b"ns", b"NS"));
    }

    #[test]
    fn garbage_never_panics() {
        for b in [
            &b":"[..],
            b"a:\r\n",
            b"a.:x\r\n\r\n",
            b".a:x\r\n\r\n",
            b"NS: <>\r\n\r\n",
            b"From: x\r\n\r\nA: b\r\n \r\n\r\n",
            b"From: x\r\n\r\n\t folded\r\n\r\n",
            b"From: x\r\nContent-Type: a\r\n folded\r\n",
            b"\n",
            b"\xff\xfe:\x00",
        ] {
            let _ = parse(b);
        }
    }
}
