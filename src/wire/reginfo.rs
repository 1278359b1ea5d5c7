//! Registration information: the `application/reginfo+xml` body of a `reg` event NOTIFY
//! (RFC 3680 §5, schema §5.4, namespace `urn:ietf:params:xml:ns:reginfo`), with the GRUU
//! extension of RFC 5628 (`<gr:pub-gruu>` in namespace `urn:ietf:params:xml:ns:gruuinfo`).
//!
//! ```text
//! <reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="full">
//!   <registration aor="sip:user@example.com" id="as9" state="active">
//!     <contact id="76" state="active" event="registered" expires="3600" q="0.8">
//!       <uri>sip:user@pc887.example.com</uri>
//!       <display-name>..</display-name>                    optional
//!       <unknown-param name="+sip.instance">"&lt;urn:..&gt;"</unknown-param>  0..n
//!     </contact>
//!   </registration>
//! </reginfo>
//! ```
//!
//! # What is accepted
//! - Namespaces are resolved by URI (any prefix); ours is matched without regard to ASCII case,
//!   as the IMDN and isComposing codecs do.
//! - Attributes that the schema does not define (its `xs:anyAttribute`), prefixed attributes
//!   (`xsi:schemaLocation`, `xml:lang`) and elements of other namespaces (its
//!   `xs:any namespace="##other"`) are skipped, bounded by the element and depth limits, except
//!   RFC 5628 `<pub-gruu uri=..>` inside `<contact>`, which is kept ([`Contact::pub_gruu`]):
//!   it is the URI that reaches that one device. The availability decision needs nothing else.
//! - Element order inside `<contact>` is not enforced.
//!
//! # What is refused (400 unless said otherwise)
//! - Not well-formed XML, a `<!DOCTYPE>` (no DTD or entity is ever processed), an undefined
//!   entity, a non-UTF-8 encoding (415), a root that is not `<reginfo>` in our namespace (415).
//! - A required attribute missing or not one of its schema values (`version`, `state`, `aor`,
//!   `id`, `event`, a non-number in `expires`), a `<contact>` without `<uri>`, `<uri>` or
//!   `<display-name>` twice, an unknown element of our namespace, text where only elements go.
//! - Over the [`Limits`] (413).

use std::borrow::Cow;

use bytes::Bytes;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;

use super::xml::{
    Bounds, Cursor, DECLARATION, XmlError, is_xml_ws, push_escaped, push_indent, trim_xml,
};
use super::{Answer, WireError};

/// The reginfo XML namespace (RFC 3680 §5.4).
pub const NAMESPACE: &str = "urn:ietf:params:xml:ns:reginfo";
/// The GRUU extension namespace (RFC 5628 §4).
pub const GRUU_NAMESPACE: &str = "urn:ietf:params:xml:ns:gruuinfo";
/// The MIME type of a reginfo body (RFC 3680 §4.5).
pub const CONTENT_TYPE: &str = "application/reginfo+xml";
/// The event package name (RFC 3680 §4.1): `Event: reg`.
pub const EVENT_PACKAGE: &str = "reg";

/// Bounds on one reginfo body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest body, in bytes. Default 256 KiB (a registrar may report a whole implicit
    /// registration set, TS 24.229 §5.4.2.1.2, in one NOTIFY).
    pub max_size: usize,
    /// Most `<registration>` elements. Default 1024.
    pub max_registrations: usize,
    /// Most `<contact>` elements in one `<registration>`. Default 64.
    pub max_contacts: usize,
    /// Most `<unknown-param>` elements in one `<contact>`. Default 64.
    pub max_params: usize,
    /// Most elements overall, skipped extensions included. Default 16384.
    pub max_elements: usize,
    /// Deepest nesting (`<reginfo>` is 1, `<uri>` 4). Default 16.
    pub max_depth: usize,
    /// Longest text or attribute value, in bytes. Default 4096.
    pub max_text: usize,
    /// Most namespace declarations in scope at once. Default 16.
    pub max_namespaces: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_size: 256 * 1024,
            max_registrations: 1024,
            max_contacts: 64,
            max_params: 64,
            max_elements: 16384,
            max_depth: 16,
            max_text: 4096,
            max_namespaces: 16,
        }
    }
}

/// `<reginfo state=..>` (RFC 3680 §5.1): the whole state or only what changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocState {
    Full,
    Partial,
}

/// `<registration state=..>` (RFC 3680 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegistrationState {
    /// No contact is bound to the AOR (yet).
    Init,
    /// At least one contact is bound.
    Active,
    /// No contact any more: the registration is gone.
    Terminated,
}

/// `<contact state=..>` (RFC 3680 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContactState {
    Active,
    Terminated,
}

/// `<contact event=..>`: what made the contact's state what it is (RFC 3680 §5.1, §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContactEvent {
    Registered,
    Created,
    Refreshed,
    Shortened,
    Expired,
    Deactivated,
    Probation,
    Unregistered,
    Rejected,
}

macro_rules! names {
    ($ty:ident { $($v:ident = $s:literal),* $(,)? }) => {
        impl $ty {
            /// The attribute value, as the schema spells it.
            pub fn as_str(&self) -> &'static str {
                match self { $($ty::$v => $s),* }
            }
            fn from_bytes(b: &[u8]) -> Option<$ty> {
                match b { $(x if x == $s.as_bytes() => Some($ty::$v),)* _ => None }
            }
        }
    };
}

names!(DocState {
    Full = "full",
    Partial = "partial"
});
names!(RegistrationState {
    Init = "init",
    Active = "active",
    Terminated = "terminated"
});
names!(ContactState {
    Active = "active",
    Terminated = "terminated"
});
names!(ContactEvent {
    Registered = "registered",
    Created = "created",
    Refreshed = "refreshed",
    Shortened = "shortened",
    Expired = "expired",
    Deactivated = "deactivated",
    Probation = "probation",
    Unregistered = "unregistered",
    Rejected = "rejected",
});

/// `<unknown-param name="..">value</unknown-param>`: a Contact header parameter the registrar
/// kept (RFC 3680 §5.1), e.g. `+sip.instance` or a feature tag (TS 24.229 §5.4.2.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownParam {
    pub name: Bytes,
    /// The text as written (a quoted value keeps its quotes; empty for a flag parameter).
    pub value: Bytes,
}

/// One `<contact>` of a registration. Values are slices of the input unless unescaping
/// changed them; they must be UTF-8 text to serialize to valid XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub id: Bytes,
    pub state: ContactState,
    pub event: ContactEvent,
    /// `<uri>`: the registered contact address (white space trimmed, xs:anyURI).
    pub uri: Bytes,
    pub display_name: Option<Bytes>,
    /// Seconds until the binding expires.
    pub expires: Option<u64>,
    pub duration_registered: Option<u64>,
    /// With `event="probation"`: seconds after which the user agent should retry.
    pub retry_after: Option<u64>,
    pub q: Option<Bytes>,
    pub callid: Option<Bytes>,
    pub cseq: Option<u64>,
    pub unknown_params: Vec<UnknownParam>,
    /// RFC 5628 `<gr:pub-gruu uri=..>`: the public GRUU of this contact.
    pub pub_gruu: Option<Bytes>,
}

impl Contact {
    /// A contact with only the required fields.
    pub fn new(
        id: impl Into<Bytes>,
        state: ContactState,
        event: ContactEvent,
        uri: impl Into<Bytes>,
    ) -> Contact {
        Contact {
            id: id.into(),
            state,
            event,
            uri: uri.into(),
            display_name: None,
            expires: None,
            duration_registered: None,
            retry_after: None,
            q: None,
            callid: None,
            cseq: None,
            unknown_params: Vec::new(),
            pub_gruu: None,
        }
    }

    /// The value of the `unknown-param` named `name` (parameter names compare without regard
    /// to case, RFC 3261 §7.3.1).
    pub fn param(&self, name: &str) -> Option<&Bytes> {
        self.unknown_params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name.as_bytes()))
            .map(|p| &p.value)
    }

    /// The device's `+sip.instance` (RFC 5626 §4.1), quotes and angle brackets removed.
    pub fn instance(&self) -> Option<Bytes> {
        let v = trim_xml(self.param("+sip.instance")?);
        let v = strip(&v, b'"', b'"');
        Some(strip(&v, b'<', b'>'))
    }
}

fn strip(v: &Bytes, open: u8, close: u8) -> Bytes {
    if v.len() >= 2 && v.first() == Some(&open) && v.last() == Some(&close) {
        v.slice(1..v.len() - 1)
    } else {
        v.clone()
    }
}

/// One `<registration>`: the state of one address-of-record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub aor: Bytes,
    pub id: Bytes,
    pub state: RegistrationState,
    pub contacts: Vec<Contact>,
}

impl Registration {
    /// The contacts that can be reached now (`state="active"`).
    pub fn active_contacts(&self) -> impl Iterator<Item = &Contact> {
        self.contacts
            .iter()
            .filter(|c| c.state == ContactState::Active)
    }
}

/// A whole reginfo document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reginfo {
    /// Incremented by one per NOTIFY of the subscription, from 0 (RFC 3680 §5.1).
    pub version: u64,
    pub state: DocState,
    pub registrations: Vec<Registration>,
}

/// Why a reginfo body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReginfoError {
    /// Malformed XML, wrong root or namespace, or over an XML limit.
    #[error(transparent)]
    Xml(#[from] XmlError),
    /// A required attribute is absent.
    #[error("<{element}> has no {attribute}= attribute")]
    MissingAttribute {
        element: &'static str,
        attribute: &'static str,
        offset: usize,
    },
    /// An attribute value that the schema does not allow.
    #[error("<{element} {attribute}={value:?}> is not a valid value")]
    BadAttribute {
        element: &'static str,
        attribute: &'static str,
        value: String,
        offset: usize,
    },
    /// A required element is absent.
    #[error("<{parent}> has no <{element}>")]
    Missing {
        element: &'static str,
        parent: &'static str,
        offset: usize,
    },
    /// An element that may appear once appears twice.
    #[error("<{element}> appears twice in <{parent}>")]
    Duplicate {
        element: &'static str,
        parent: &'static str,
        offset: usize,
    },
    /// An element of the reginfo namespace where the schema does not put it.
    #[error("<{element}> is not allowed inside <{parent}>")]
    Misplaced {
        element: String,
        parent: &'static str,
        offset: usize,
    },
    /// More registrations, contacts or parameters than the limits allow (413).
    #[error("more than {max} <{element}> elements")]
    TooMany {
        element: &'static str,
        max: usize,
        offset: usize,
    },
}

impl WireError for ReginfoError {
    fn answer(&self) -> Answer {
        match self {
            ReginfoError::Xml(e) => e.answer(),
            ReginfoError::TooMany { .. } => Answer::Status(413),
            _ => Answer::Status(400),
        }
    }

    fn offset(&self) -> Option<usize> {
        match self {
            ReginfoError::Xml(e) => e.offset(),
            ReginfoError::MissingAttribute { offset, .. }
            | ReginfoError::BadAttribute { offset, .. }
            | ReginfoError::Missing { offset, .. }
            | ReginfoError::Duplicate { offset, .. }
            | ReginfoError::Misplaced { offset, .. }
            | ReginfoError::TooMany { offset, .. } => Some(*offset),
        }
    }
}

/// Parse a reginfo body with the default [`Limits`].
pub fn parse(input: Bytes) -> Result<Reginfo, ReginfoError> {
    parse_with(input, &Limits::default())
}

/// Parse a reginfo body.
pub fn parse_with(input: Bytes, limits: &Limits) -> Result<Reginfo, ReginfoError> {
    let mut p = Parser::new(&input, limits)?;
    let (root, at) = p.root()?;
    let r = p.reginfo(&root, at)?;
    p.finish()?;
    Ok(r)
}

impl Reginfo {
    /// Parse with the default limits.
    pub fn parse(input: Bytes) -> Result<Reginfo, ReginfoError> {
        parse(input)
    }

    /// The canonical serialization.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(256);
        self.write_to(&mut out);
        Bytes::from(out)
    }

    /// Append the canonical serialization to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(DECLARATION);
        out.extend_from_slice(b"<reginfo xmlns=\"");
        out.extend_from_slice(NAMESPACE.as_bytes());
        out.push(b'"');
        let gruu = self
            .registrations
            .iter()
            .flat_map(|r| &r.contacts)
            .any(|c| c.pub_gruu.is_some());
        if gruu {
            out.extend_from_slice(b" xmlns:gr=\"");
            out.extend_from_slice(GRUU_NAMESPACE.as_bytes());
            out.push(b'"');
        }
        push_attr(out, "version", self.version.to_string().as_bytes());
        push_attr(out, "state", self.state.as_str().as_bytes());
        out.extend_from_slice(b">\n");
        for r in &self.registrations {
            push_indent(out, 2);
            out.extend_from_slice(b"<registration");
            push_attr(out, "aor", &r.aor);
            push_attr(out, "id", &r.id);
            push_attr(out, "state", r.state.as_str().as_bytes());
            if r.contacts.is_empty() {
                out.extend_from_slice(b"/>\n");
                continue;
            }
            out.extend_from_slice(b">\n");
            for c in &r.contacts {
                c.write_to(out);
            }
            out.extend_from_slice(b"  </registration>\n");
        }
        out.extend_from_slice(b"</reginfo>\n");
    }
}

impl Contact {
    fn write_to(&self, out: &mut Vec<u8>) {
        push_indent(out, 4);
        out.extend_from_slice(b"<contact");
        push_attr(out, "id", &self.id);
        push_attr(out, "state", self.state.as_str().as_bytes());
        push_attr(out, "event", self.event.as_str().as_bytes());
        let numbers = [
            ("expires", self.expires),
            ("duration-registered", self.duration_registered),
            ("retry-after", self.retry_after),
            ("cseq", self.cseq),
        ];
        for (name, v) in numbers {
            if let Some(v) = v {
                push_attr(out, name, v.to_string().as_bytes());
            }
        }
        if let Some(q) = &self.q {
            push_attr(out, "q", q);
        }
        if let Some(c) = &self.callid {
            push_attr(out, "callid", c);
        }
        out.extend_from_slice(b">\n");
        push_indent(out, 6);
        out.extend_from_slice(b"<uri>");
        push_escaped(out, &self.uri);
        out.extend_from_slice(b"</uri>\n");
        if let Some(d) = &self.display_name {
            push_indent(out, 6);
            out.extend_from_slice(b"<display-name>");
            push_escaped(out, d);
            out.extend_from_slice(b"</display-name>\n");
        }
        for p in &self.unknown_params {
            push_indent(out, 6);
            out.extend_from_slice(b"<unknown-param");
            push_attr(out, "name", &p.name);
            out.push(b'>');
            push_escaped(out, &p.value);
            out.extend_from_slice(b"</unknown-param>\n");
        }
        if let Some(g) = &self.pub_gruu {
            push_indent(out, 6);
            out.extend_from_slice(b"<gr:pub-gruu");
            push_attr(out, "uri", g);
            out.extend_from_slice(b"/>\n");
        }
        out.extend_from_slice(b"    </contact>\n");
    }
}

/// ` name="value"` with the value escaped for a double-quoted attribute; tab, CR and LF as
/// character references so that attribute-value normalization (XML 1.0 §3.3.3) keeps them.
fn push_attr(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"=\"");
    for &b in value {
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'"' => out.extend_from_slice(b"&quot;"),
            b'\t' => out.extend_from_slice(b"&#9;"),
            b'\n' => out.extend_from_slice(b"&#10;"),
            b'\r' => out.extend_from_slice(b"&#13;"),
            b => out.push(b),
        }
    }
    out.push(b'"');
}

// ---------------------------------------------------------------------------------------------
// The reader.

/// Which namespace an element is in.
enum Ns {
    Ours,
    Gruu,
    Other,
}

/// One step inside an element.
enum Step<'a> {
    Start {
        ns: Ns,
        e: BytesStart<'a>,
        offset: usize,
    },
    End,
}

struct Parser<'a> {
    input: &'a Bytes,
    cur: Cursor<'a>,
    limits: Limits,
}

fn malformed(offset: usize, reason: impl Into<String>) -> ReginfoError {
    ReginfoError::Xml(XmlError::Malformed {
        offset,
        reason: reason.into(),
    })
}

impl<'a> Parser<'a> {
    fn new(input: &'a Bytes, limits: &Limits) -> Result<Self, ReginfoError> {
        let bounds = Bounds {
            max_size: limits.max_size,
            max_elements: limits.max_elements,
            max_depth: limits.max_depth,
            max_text: limits.max_text,
            max_namespaces: limits.max_namespaces,
        };
        Ok(Parser {
            input,
            cur: Cursor::new(input, bounds)?,
            limits: *limits,
        })
    }

    fn read(&mut self) -> Result<Event<'a>, ReginfoError> {
        Ok(self.cur.read()?)
    }

    fn enter(&mut self, offset: usize) -> Result<(), ReginfoError> {
        Ok(self.cur.enter(offset)?)
    }

    fn leave(&mut self) {
        self.cur.leave();
    }

    fn classify(&self, e: &BytesStart<'_>, offset: usize) -> Result<Ns, ReginfoError> {
        match self.cur.reader.resolver().resolve_element(e.name()).0 {
            ResolveResult::Bound(ns) if ns.0.eq_ignore_ascii_case(NAMESPACE) => Ok(Ns::Ours),
            ResolveResult::Bound(ns) if ns.0.eq_ignore_ascii_case(GRUU_NAMESPACE) => Ok(Ns::Gruu),
            ResolveResult::Bound(_) | ResolveResult::Unbound => Ok(Ns::Other),
            ResolveResult::Unknown(p) => Err(malformed(
                offset,
                format!("namespace prefix {p:?} is not declared"),
            )),
        }
    }

    /// The prolog and the root start tag, which must be `<reginfo>` in our namespace.
    fn root(&mut self) -> Result<(BytesStart<'a>, usize), ReginfoError> {
        let mut first = true;
        loop {
            let start = self.cur.pos;
            match self.read()? {
                // XML 1.0 §2.8: the declaration, if any, comes first.
                Event::Decl(d) if first => {
                    if let Some(enc) = d.encoding() {
                        let enc = enc.map_err(|e| malformed(start, e.to_string()))?;
                        let ok = ["UTF-8", "UTF8", "US-ASCII"]
                            .iter()
                            .any(|e| enc.eq_ignore_ascii_case(e));
                        if !ok {
                            return Err(XmlError::Encoding {
                                offset: start,
                                encoding: enc.into_owned(),
                            }
                            .into());
                        }
                    }
                }
                Event::Decl(_) => {
                    return Err(malformed(start, "XML declaration not at the start"));
                }
                Event::DocType(_) => return Err(XmlError::Doctype { offset: start }.into()),
                Event::Comment(_) | Event::PI(_) => {}
                // White space before the declaration is left by sloppy wrappers; harmless.
                Event::Text(t) if t.bytes().all(is_xml_ws) => continue,
                Event::Start(e) => {
                    self.enter(start)?;
                    let ours = matches!(self.classify(&e, start)?, Ns::Ours);
                    if ours && e.local_name().as_ref() == "reginfo" {
                        return Ok((e, start));
                    }
                    return Err(XmlError::WrongRoot {
                        offset: start,
                        found: format!("<{}>", e.name().as_ref()),
                        expected: "reginfo",
                        namespace: NAMESPACE,
                    }
                    .into());
                }
                Event::Eof => return Err(XmlError::NoRoot { offset: start }.into()),
                _ => return Err(malformed(start, "content before the root element")),
            }
            first = false;
        }
    }

    /// The next child of `parent`: a start tag (any namespace) or the end of `parent`.
    fn next(&mut self, parent: &'static str) -> Result<Step<'a>, ReginfoError> {
        loop {
            let start = self.cur.pos;
            match self.read()? {
                Event::Start(e) => {
                    self.enter(start)?;
                    let ns = self.classify(&e, start)?;
                    return Ok(Step::Start {
                        ns,
                        e,
                        offset: start,
                    });
                }
                Event::End(_) => {
                    self.leave();
                    return Ok(Step::End);
                }
                Event::Text(t) if t.bytes().all(is_xml_ws) => {}
                Event::Comment(_) | Event::PI(_) => {}
                Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => {
                    return Err(XmlError::Text {
                        offset: start,
                        parent,
                    }
                    .into());
                }
                Event::DocType(_) => return Err(XmlError::Doctype { offset: start }.into()),
                Event::Decl(_) | Event::Empty(_) => {
                    return Err(malformed(start, "unexpected markup"));
                }
                Event::Eof => {
                    return Err(malformed(start, format!("document ends inside <{parent}>")));
                }
            }
        }
    }

    /// Consume the rest of an element we do not read (an extension), bounded by the limits.
    fn skip(&mut self) -> Result<(), ReginfoError> {
        let top = self.cur.depth;
        while self.cur.depth >= top {
            let at = self.cur.pos;
            match self.read()? {
                Event::Start(_) => self.enter(at)?,
                Event::End(_) => self.leave(),
                Event::DocType(_) => return Err(XmlError::Doctype { offset: at }.into()),
                Event::GeneralRef(r) => {
                    // Even skipped content may not use an undefined entity (XML 1.0 §4.1).
                    let ok = matches!(r.resolve_char_ref(), Ok(Some(_)))
                        || quick_xml::escape::resolve_predefined_entity(&r).is_some();
                    if !ok {
                        return Err(XmlError::UndefinedEntity {
                            offset: at,
                            name: r.to_string(),
                        }
                        .into());
                    }
                }
                Event::Eof => return Err(malformed(at, "document ends inside an extension")),
                _ => {}
            }
        }
        Ok(())
    }

    /// After the root's end: only white space, comments and processing instructions.
    fn finish(&mut self) -> Result<(), ReginfoError> {
        loop {
            let start = self.cur.pos;
            match self.read()? {
                Event::Eof => return Ok(()),
                Event::Comment(_) | Event::PI(_) => {}
                Event::Text(t) if t.bytes().all(is_xml_ws) => {}
                _ => return Err(XmlError::TrailingContent { offset: start }.into()),
            }
        }
    }

    /// `s` as a slice of the input when it is one, else a copy.
    fn bytes_of(&self, s: Cow<'_, str>) -> Bytes {
        match s {
            Cow::Borrowed(b) => {
                let range = self.input.as_ptr_range();
                let p = b.as_ptr();
                if !b.is_empty() && range.start <= p && p.wrapping_add(b.len()) <= range.end {
                    self.input.slice_ref(b.as_bytes())
                } else {
                    Bytes::copy_from_slice(b.as_bytes())
                }
            }
            Cow::Owned(s) => Bytes::from(s.into_bytes()),
        }
    }

    /// The unprefixed attributes of `e` named in `wanted`, unescaped and normalized.
    fn attrs<const N: usize>(
        &self,
        e: &BytesStart<'_>,
        element: &'static str,
        wanted: [&'static str; N],
        offset: usize,
    ) -> Result<[Option<Bytes>; N], ReginfoError> {
        let mut out: [Option<Bytes>; N] = std::array::from_fn(|_| None);
        for a in e.attributes() {
            let a = a.map_err(|err| malformed(offset, err.to_string()))?;
            // Prefixed attributes (xsi:, xml:, xmlns:) are not ours (XML Namespaces §6.3).
            if a.key.prefix().is_some() || a.key.as_ref() == "xmlns" {
                continue;
            }
            let Some(i) = wanted.iter().position(|w| *w == a.key.as_ref()) else {
                continue;
            };
            let v = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|err| malformed(offset, err.to_string()))?;
            if v.len() > self.limits.max_text {
                return Err(XmlError::TextTooLong {
                    offset,
                    element,
                    max: self.limits.max_text,
                }
                .into());
            }
            if let Some(slot) = out.get_mut(i) {
                *slot = Some(self.bytes_of(v));
            }
        }
        Ok(out)
    }

    /// The text content of `element` up to its end tag ([`Cursor::text`]).
    fn text(&mut self, element: &'static str) -> Result<Bytes, ReginfoError> {
        Ok(self.cur.text(element)?)
    }

    fn reginfo(&mut self, root: &BytesStart<'a>, at: usize) -> Result<Reginfo, ReginfoError> {
        let [version, state] = self.attrs(root, "reginfo", ["version", "state"], at)?;
        let version =
            number(version, "reginfo", "version", at)?.ok_or(ReginfoError::MissingAttribute {
                element: "reginfo",
                attribute: "version",
                offset: at,
            })?;
        let state = required(state, "reginfo", "state", at, DocState::from_bytes)?;
        let mut registrations = Vec::new();
        loop {
            match self.next("reginfo")? {
                Step::End => break,
                Step::Start {
                    ns: Ns::Ours,
                    e,
                    offset,
                } => {
                    if e.local_name().as_ref() != "registration" {
                        return Err(misplaced(&e, "reginfo", offset));
                    }
                    if registrations.len() >= self.limits.max_registrations {
                        return Err(ReginfoError::TooMany {
                            element: "registration",
                            max: self.limits.max_registrations,
                            offset,
                        });
                    }
                    let r = self.registration(&e, offset)?;
                    registrations.push(r);
                }
                Step::Start { .. } => self.skip()?,
            }
        }
        Ok(Reginfo {
            version,
            state,
            registrations,
        })
    }

    fn registration(
        &mut self,
        e: &BytesStart<'a>,
        offset: usize,
    ) -> Result<Registration, ReginfoError> {
        const EL: &str = "registration";
        let [aor, id, state] = self.attrs(e, EL, ["aor", "id", "state"], offset)?;
        let aor = aor.map(|a| trim_xml(&a)).filter(|a| !a.is_empty()).ok_or(
            ReginfoError::MissingAttribute {
                element: EL,
                attribute: "aor",
                offset,
            },
        )?;
        let id = id.ok_or(ReginfoError::MissingAttribute {
            element: EL,
            attribute: "id",
            offset,
        })?;
        let state = required(state, EL, "state", offset, RegistrationState::from_bytes)?;
        let mut contacts = Vec::new();
        loop {
            match self.next(EL)? {
                Step::End => break,
                Step::Start {
                    ns: Ns::Ours,
                    e,
                    offset,
                } => {
                    if e.local_name().as_ref() != "contact" {
                        return Err(misplaced(&e, EL, offset));
                    }
                    if contacts.len() >= self.limits.max_contacts {
                        return Err(ReginfoError::TooMany {
                            element: "contact",
                            max: self.limits.max_contacts,
                            offset,
                        });
                    }
                    let c = self.contact(&e, offset)?;
                    contacts.push(c);
                }
                Step::Start { .. } => self.skip()?,
            }
        }
        Ok(Registration {
            aor,
            id,
            state,
            contacts,
        })
    }

    fn contact(&mut self, e: &BytesStart<'a>, offset: usize) -> Result<Contact, ReginfoError> {
        const EL: &str = "contact";
        let [
            id,
            state,
            event,
            expires,
            duration,
            retry_after,
            q,
            callid,
            cseq,
        ] = self.attrs(
            e,
            EL,
            [
                "id",
                "state",
                "event",
                "expires",
                "duration-registered",
                "retry-after",
                "q",
                "callid",
                "cseq",
            ],
            offset,
        )?;
        let id = id.ok_or(ReginfoError::MissingAttribute {
            element: EL,
            attribute: "id",
            offset,
        })?;
        let state = required(state, EL, "state", offset, ContactState::from_bytes)?;
        let event = required(event, EL, "event", offset, ContactEvent::from_bytes)?;
        let mut c = Contact::new(id, state, event, Bytes::new());
        c.expires = number(expires, EL, "expires", offset)?;
        c.duration_registered = number(duration, EL, "duration-registered", offset)?;
        c.retry_after = number(retry_after, EL, "retry-after", offset)?;
        c.cseq = number(cseq, EL, "cseq", offset)?;
        c.q = q;
        c.callid = callid;
        let mut uri = None;
        loop {
            match self.next(EL)? {
                Step::End => break,
                Step::Start {
                    ns: Ns::Ours,
                    e,
                    offset,
                } => match e.local_name().as_ref() {
                    "uri" => {
                        if uri.is_some() {
                            return Err(dup("uri", EL, offset));
                        }
                        uri = Some(trim_xml(&self.text("uri")?));
                    }
                    "display-name" => {
                        if c.display_name.is_some() {
                            return Err(dup("display-name", EL, offset));
                        }
                        c.display_name = Some(self.text("display-name")?);
                    }
                    "unknown-param" => {
                        if c.unknown_params.len() >= self.limits.max_params {
                            return Err(ReginfoError::TooMany {
                                element: "unknown-param",
                                max: self.limits.max_params,
                                offset,
                            });
                        }
                        let [name] = self.attrs(&e, "unknown-param", ["name"], offset)?;
                        let name = name.ok_or(ReginfoError::MissingAttribute {
                            element: "unknown-param",
                            attribute: "name",
                            offset,
                        })?;
                        let value = self.text("unknown-param")?;
                        c.unknown_params.push(UnknownParam { name, value });
                    }
                    _ => return Err(misplaced(&e, EL, offset)),
                },
                Step::Start {
                    ns: Ns::Gruu,
                    e,
                    offset,
                } if e.local_name().as_ref() == "pub-gruu" => {
                    if c.pub_gruu.is_some() {
                        return Err(dup("pub-gruu", EL, offset));
                    }
                    let [g] = self.attrs(&e, "pub-gruu", ["uri"], offset)?;
                    c.pub_gruu = Some(g.ok_or(ReginfoError::MissingAttribute {
                        element: "pub-gruu",
                        attribute: "uri",
                        offset,
                    })?);
                    self.skip()?;
                }
                Step::Start { .. } => self.skip()?,
            }
        }
        c.uri = uri.ok_or(ReginfoError::Missing {
            element: "uri",
            parent: EL,
            offset,
        })?;
        Ok(c)
    }
}

fn dup(element: &'static str, parent: &'static str, offset: usize) -> ReginfoError {
    ReginfoError::Duplicate {
        element,
        parent,
        offset,
    }
}

fn misplaced(e: &BytesStart<'_>, parent: &'static str, offset: usize) -> ReginfoError {
    ReginfoError::Misplaced {
        element: e.local_name().as_ref().to_string(),
        parent,
        offset,
    }
}

fn required<T>(
    v: Option<Bytes>,
    element: &'static str,
    attribute: &'static str,
    offset: usize,
    from: fn(&[u8]) -> Option<T>,
) -> Result<T, ReginfoError> {
    let v = v.ok_or(ReginfoError::MissingAttribute {
        element,
        attribute,
        offset,
    })?;
    // Enumerated values are tokens: white space around them is not part of the value.
    from(&trim_xml(&v)).ok_or_else(|| ReginfoError::BadAttribute {
        element,
        attribute,
        value: String::from_utf8_lossy(&v).into_owned(),
        offset,
    })
}

/// An `xs:nonNegativeInteger` / `xs:unsignedLong` attribute.
fn number(
    v: Option<Bytes>,
    element: &'static str,
    attribute: &'static str,
    offset: usize,
) -> Result<Option<u64>, ReginfoError> {
    let Some(v) = v else { return Ok(None) };
    let t = trim_xml(&v);
    let t = t.strip_prefix(b"+").unwrap_or(&t);
    let bad = || ReginfoError::BadAttribute {
        element,
        attribute,
        value: String::from_utf8_lossy(&v).into_owned(),
        offset,
    };
    if t.is_empty() || !t.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    std::str::from_utf8(t)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Some)
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Reginfo, ReginfoError> {
        parse(Bytes::copy_from_slice(s.as_bytes()))
    }

    const RFC_5_3: &str = r#"<?xml version="1.0"?>
       <reginfo xmlns="urn:ietf:params:xml:ns:reginfo"
           xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
                    version="0" state="full">
         <registration aor="sip:user@example.com" id="as9"
                       state="active">
           <contact id="76" state="active" event="registered"
                    duration-registered="7322"
                    q="0.8">
                    <uri>sip:user@pc887.example.com</uri>
           </contact>
           <contact id="77" state="terminated" event="expired"
                    duration-registered="3600"
                    q="0.5">
                    <uri>sip:user@university.edu</uri>
           </contact>
         </registration>
       </reginfo>
"#;

    #[test]
    fn rfc_example() {
        let r = p(RFC_5_3).unwrap();
        assert_eq!(r.version, 0);
        assert_eq!(r.state, DocState::Full);
        let reg = &r.registrations[0];
        assert_eq!(&reg.aor[..], b"sip:user@example.com");
        assert_eq!(reg.state, RegistrationState::Active);
        assert_eq!(reg.contacts.len(), 2);
        assert_eq!(reg.contacts[0].duration_registered, Some(7322));
        assert_eq!(reg.contacts[0].q.as_deref(), Some(&b"0.8"[..]));
        assert_eq!(reg.contacts[1].event, ContactEvent::Expired);
        assert_eq!(reg.active_contacts().count(), 1);
        // Round trip through the canonical form.
        let again = parse(r.to_bytes()).unwrap();
        assert_eq!(again, r);
    }

    #[test]
    fn values_are_slices_of_the_input() {
        let input = Bytes::from_static(RFC_5_3.as_bytes());
        let r = parse(input.clone()).unwrap();
        let aor = &r.registrations[0].aor;
        let at = RFC_5_3.find("sip:user@example.com").unwrap();
        assert_eq!(aor.as_ptr(), input[at..].as_ptr());
        let uri = &r.registrations[0].contacts[0].uri;
        let at = RFC_5_3.find("sip:user@pc887").unwrap();
        assert_eq!(uri.as_ptr(), input[at..].as_ptr());
    }

    #[test]
    fn unknown_params_gruu_and_extensions() {
        let r = p(r#"<r:reginfo xmlns:r="URN:IETF:PARAMS:XML:NS:REGINFO"
              xmlns:gr="urn:ietf:params:xml:ns:gruuinfo" xmlns:x="urn:x" version="7" state="partial">
            <x:top a="1"><x:deep/></x:top>
            <r:registration aor=" sip:a@b " id="r1" state="init"/>
            <r:registration aor="sip:c@d" id="r2" state="active" x:attr="ignored">
              <r:contact id="c1" state="active" event="created" expires="600" cseq="3" callid="abc@h" retry-after="5" other="1">
                <x:ext>skipped &amp; &#65;</x:ext>
                <r:unknown-param name="+sip.instance">"&lt;urn:gsma:imei:1-2-3&gt;"</r:unknown-param>
                <r:unknown-param name="+g.oma.sip-im"></r:unknown-param>
                <r:uri>
                  sip:c@1.2.3.4:5060;transport=tcp
                </r:uri>
                <r:display-name xml:lang="en">C &amp; D</r:display-name>
                <gr:pub-gruu uri="sip:c@d;gr=urn:uuid:1"/>
                <gr:temp-gruu uri="sip:tgruu.1@d;gr" first-cseq="3"/>
              </r:contact>
            </r:registration>
          </r:reginfo>"#)
        .unwrap();
        assert_eq!(r.version, 7);
        assert_eq!(r.state, DocState::Partial);
        assert_eq!(&r.registrations[0].aor[..], b"sip:a@b");
        assert!(r.registrations[0].contacts.is_empty());
        let c = &r.registrations[1].contacts[0];
        assert_eq!(&c.uri[..], b"sip:c@1.2.3.4:5060;transport=tcp");
        assert_eq!(c.display_name.as_deref(), Some(&b"C & D"[..]));
        assert_eq!(c.expires, Some(600));
        assert_eq!(c.cseq, Some(3));
        assert_eq!(c.retry_after, Some(5));
        assert_eq!(c.callid.as_deref(), Some(&b"abc@h"[..]));
        assert_eq!(c.instance().as_deref(), Some(&b"urn:gsma:imei:1-2-3"[..]));
        assert_eq!(c.param("+G.OMA.SIP-IM").map(|v| v.len()), Some(0));
        assert_eq!(c.pub_gruu.as_deref(), Some(&b"sip:c@d;gr=urn:uuid:1"[..]));
        let again = parse(r.to_bytes()).unwrap();
        assert_eq!(again, r);
    }

    #[test]
    fn refusals() {
        let head = r#"<reginfo xmlns="urn:ietf:params:xml:ns:reginfo""#;
        let cases: &[(&str, u16)] = &[
            ("<reginfo xmlns='urn:other' version='0' state='full'/>", 415),
            (
                "<!DOCTYPE reginfo [<!ENTITY x 'y'>]><reginfo xmlns='urn:ietf:params:xml:ns:reginfo' version='0' state='full'/>",
                400,
            ),
            (&format!("{head} state='full'/>"), 400),
            (&format!("{head} version='-1' state='full'/>"), 400),
            (
                &format!("{head} version='99999999999999999999' state='full'/>"),
                400,
            ),
            (&format!("{head} version='0' state='some'/>"), 400),
            (&format!("{head} version='0'/>"), 400),
            (
                &format!(
                    "{head} version='0' state='full'><registration id='1' state='active'/></reginfo>"
                ),
                400,
            ),
            (
                &format!(
                    "{head} version='0' state='full'><registration aor='sip:a@b' id='1' state='gone'/></reginfo>"
                ),
                400,
            ),
            (
                &format!(
                    "{head} version='0' state='full'><registration aor='sip:a@b' id='1' state='active'><contact id='1' state='active' event='registered'/></registration></reginfo>"
                ),
                400,
            ),
            (
                &format!(
                    "{head} version='0' state='full'><registration aor='sip:a@b' id='1' state='active'><contact id='1' state='active' event='born'><uri>x</uri></contact></registration></reginfo>"
                ),
                400,
            ),
            (
                &format!(
                    "{head} version='0' state='full'><registration aor='sip:a@b' id='1' state='active'><contact id='1' state='active' event='created' expires='1h'><uri>x</uri></contact></registration></reginfo>"
                ),
                400,
            ),
            (
                &format!(
                    "{head} version='0' state='full'><registration aor='sip:a@b' id='1' state='active'><contact id='1' state='active' event='created'><uri>x</uri><uri>y</uri></contact></registration></reginfo>"
                ),
                400,
            ),
            (
                &format!("{head} version='0' state='full'><contact/></reginfo>"),
                400,
            ),
            (
                &format!("{head} version='0' state='full'>text</reginfo>"),
                400,
            ),
            (
                &format!("{head} version='0' state='full'><x:a xmlns:x='u'>&bad;</x:a></reginfo>"),
                400,
            ),
            (&format!("{head} version='0' state='full'/><more/>"), 400),
            (&format!("{head} version='0' state='full'>"), 400),
            ("", 400),
        ];
        // The offset of a root attribute fault is the root's.
        let err = p(
            "<?xml version='1.0'?>\n<reginfo xmlns='urn:ietf:params:xml:ns:reginfo' state='full'/>",
        )
        .unwrap_err();
        assert_eq!(err.offset(), Some(22), "{err}");
        for (doc, status) in cases {
            let err = p(doc).unwrap_err();
            assert_eq!(err.answer(), Answer::Status(*status), "{doc}: {err}");
        }
    }

    #[test]
    fn limits() {
        let limits = Limits {
            max_registrations: 2,
            max_contacts: 1,
            max_params: 1,
            ..Limits::default()
        };
        let reg = "<registration aor='sip:a@b' id='1' state='init'/>";
        let doc = format!(
            "<reginfo xmlns='urn:ietf:params:xml:ns:reginfo' version='0' state='full'>{}</reginfo>",
            reg.repeat(3)
        );
        let err = parse_with(Bytes::from(doc), &limits).unwrap_err();
        assert!(matches!(
            err,
            ReginfoError::TooMany {
                element: "registration",
                ..
            }
        ));
        assert_eq!(err.answer(), Answer::Status(413));
        let c = "<contact id='1' state='active' event='created'><uri>x</uri></contact>";
        let doc = format!(
            "<reginfo xmlns='urn:ietf:params:xml:ns:reginfo' version='0' state='full'><registration aor='sip:a@b' id='1' state='active'>{}</registration></reginfo>",
            c.repeat(2)
        );
        let err = parse_with(Bytes::from(doc), &limits).unwrap_err();
        assert!(matches!(
            err,
            ReginfoError::TooMany {
                element: "contact",
                ..
            }
        ));
        let doc = "<reginfo xmlns='urn:ietf:params:xml:ns:reginfo' version='0' state='full'><registration aor='sip:a@b' id='1' state='active'><contact id='1' state='active' event='created'><uri>x</uri><unknown-param name='a'/><unknown-param name='b'/></contact></registration></reginfo>";
        let err = parse_with(Bytes::from(doc), &limits).unwrap_err();
        assert!(matches!(
            err,
            ReginfoError::TooMany {
                element: "unknown-param",
                ..
            }
        ));
        // A deep extension is bounded while skipped.
        let deep = format!(
            "<reginfo xmlns='urn:ietf:params:xml:ns:reginfo' version='0' state='full'><x:a xmlns:x='u'>{}{}</x:a></reginfo>",
            "<x:a>".repeat(20),
            "</x:a>".repeat(20)
        );
        let err = p(&deep).unwrap_err();
        assert!(
            matches!(err, ReginfoError::Xml(XmlError::TooDeep { .. })),
            "{err}"
        );
        let big = Limits {
            max_size: 10,
            ..Limits::default()
        };
        let err = parse_with(Bytes::from_static(RFC_5_3.as_bytes()), &big).unwrap_err();
        assert_eq!(err.answer(), Answer::Status(413));
    }

    #[test]
    fn serialization_escapes() {
        let mut c = Contact::new(
            "i\"d",
            ContactState::Active,
            ContactEvent::Registered,
            "sip:a@b;x=<>&",
        );
        c.unknown_params.push(UnknownParam {
            name: Bytes::from_static(b"+sip.instance"),
            value: Bytes::from_static(b"\"<urn:uuid:1>\""),
        });
        c.callid = Some(Bytes::from_static(b"a\tb\nc"));
        let r = Reginfo {
            version: 3,
            state: DocState::Full,
            registrations: vec![Registration {
                aor: Bytes::from_static(b"sip:a@b"),
                id: Bytes::from_static(b"a&b"),
                state: RegistrationState::Active,
                contacts: vec![c],
            }],
        };
        let bytes = r.to_bytes();
        assert_eq!(parse(bytes).unwrap(), r);
    }
}
