//! isComposing: the `application/im-iscomposing+xml` body of a message-composition
//! indication (RFC 3994, schema §7, namespace `urn:ietf:params:xml:ns:im-iscomposing`).
//!
//! ```text
//! <isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing">
//!   <state>active</state>                        required: active | idle
//!   <lastactive>2003-01-27T10:43:00Z</lastactive>  optional, RFC 3339
//!   <contenttype>text/plain</contenttype>        optional, what is being composed
//!   <refresh>90</refresh>                        optional, seconds (xs:positiveInteger)
//! </isComposing>
//! ```
//!
//! # Decisions
//! - `<state>`: the schema types it `xs:string`, but RFC 3994 §3/§4 define exactly two states,
//!   `active` and `idle`, and a receiver's state machine has nothing else to map: any other
//!   value is refused (400). ASCII case and surrounding white space are forgiven.
//! - `<refresh>`: `xs:positiveInteger`, so `0`, a sign other than `+`, or a value over `u32`
//!   (136 years) is refused. RFC 3994 §4 gives it meaning only with `active` (the receiver's
//!   timeout for the active state); the schema allows it with `idle` too, so it is accepted
//!   and kept there, and it is up to the receiver to ignore it. [`IsComposing::idle`] never
//!   sets it.
//! - Lenient, as for IMDN: prefixes are aliases, the namespace URI is matched without regard
//!   to ASCII case, attributes (a wrong `xsi:schemaLocation` copied from the RFC example:
//!   `urn:ietf:params:xml:ns:im-composing`) are ignored, element order is not enforced.
//! - Strict: a missing `<state>`, any element twice, an element of the isComposing namespace
//!   that the schema does not define (the schema's extension point is `##other`), text where
//!   only elements are allowed: 400. A root that is not `<isComposing>` in this namespace:
//!   415 (RFC 3261 §21.4.13). Malformed XML, a `<!DOCTYPE>`: 400. Over the [`Limits`]: 413.
//! - Elements of other namespaces are kept as self-contained raw XML in
//!   [`IsComposing::extensions`].

use bytes::Bytes;

pub use super::xml::XmlError;
use super::xml::{self, Bounds, Doc, Item, push_leaf, trim_xml};
use super::{Answer, WireError};

/// The isComposing XML namespace (RFC 3994 §7).
pub const NAMESPACE: &str = "urn:ietf:params:xml:ns:im-iscomposing";
/// The MIME type of an isComposing body (RFC 3994 §9.1).
pub const CONTENT_TYPE: &str = "application/im-iscomposing+xml";
/// The receiver's timeout for the active state when `<refresh>` is absent (RFC 3994 §4).
pub const DEFAULT_ACTIVE_TIMEOUT_SECS: u32 = 120;

const NAMES: &[&str] = &[
    "isComposing",
    "state",
    "lastactive",
    "contenttype",
    "refresh",
];

/// Bounds on one isComposing body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest body, in bytes. Default 16 KiB (a real one is under 512 bytes).
    pub max_size: usize,
    /// Most elements, extensions' descendants included. Default 32.
    pub max_elements: usize,
    /// Deepest nesting (`<isComposing>` is 1). Default 8.
    pub max_depth: usize,
    /// Longest text value, in bytes. Default 1024.
    pub max_text: usize,
    /// Most namespace declarations in scope at once. Default 16.
    pub max_namespaces: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_size: 16 * 1024,
            max_elements: 32,
            max_depth: 8,
            max_text: 1024,
            max_namespaces: 16,
        }
    }
}

/// The composition state (RFC 3994 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// The user is composing a message.
    Active,
    /// The user is not composing.
    Idle,
}

impl State {
    /// The `<state>` text.
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Active => "active",
            State::Idle => "idle",
        }
    }
}

/// One isComposing indication (RFC 3994 §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsComposing {
    /// `<state>`.
    pub state: State,
    /// `<lastactive>`: when the user was last active (RFC 3339 text, not checked).
    pub lastactive: Option<Bytes>,
    /// `<contenttype>`: the kind of content being composed (a MIME type or a top-level type).
    pub contenttype: Option<Bytes>,
    /// `<refresh>`: seconds until the sender refreshes the active state.
    pub refresh: Option<u32>,
    /// Elements of other namespaces, raw XML: each one well-formed element that declares
    /// every namespace prefix it uses (see [`crate::wire::imdn::Imdn::status_extensions`]).
    pub extensions: Vec<Bytes>,
}

/// Why an isComposing body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IsComposingError {
    /// Malformed XML, wrong root or namespace, or over a limit.
    #[error(transparent)]
    Xml(#[from] XmlError),
    /// No `<state>` (required by the schema, RFC 3994 §7).
    #[error("<isComposing> has no <state>")]
    MissingState { offset: usize },
    /// A `<state>` other than `active` or `idle`.
    #[error("<state> is {found:?}, expected active or idle")]
    BadState { found: String, offset: usize },
    /// A `<refresh>` that is not a positive integer of at most 4294967295.
    #[error("<refresh> is {found:?}, expected a positive number of seconds")]
    BadRefresh { found: String, offset: usize },
    /// An element that may appear once appears twice.
    #[error("<{element}> appears twice in <isComposing>")]
    Duplicate {
        element: &'static str,
        offset: usize,
    },
    /// `<isComposing>` nested in itself.
    #[error("<{element}> is not allowed inside <isComposing>")]
    Misplaced {
        element: &'static str,
        offset: usize,
    },
}

impl WireError for IsComposingError {
    fn answer(&self) -> Answer {
        match self {
            IsComposingError::Xml(e) => e.answer(),
            _ => Answer::Status(400),
        }
    }

    fn offset(&self) -> Option<usize> {
        match self {
            IsComposingError::Xml(e) => e.offset(),
            IsComposingError::MissingState { offset }
            | IsComposingError::BadState { offset, .. }
            | IsComposingError::BadRefresh { offset, .. }
            | IsComposingError::Duplicate { offset, .. }
            | IsComposingError::Misplaced { offset, .. } => Some(*offset),
        }
    }
}

/// Parse an isComposing body with the default [`Limits`].
pub fn parse(input: Bytes) -> Result<IsComposing, IsComposingError> {
    parse_with(input, &Limits::default())
}

/// Parse an isComposing body.
pub fn parse_with(input: Bytes, limits: &Limits) -> Result<IsComposing, IsComposingError> {
    let bounds = Bounds {
        max_size: limits.max_size,
        max_elements: limits.max_elements,
        max_depth: limits.max_depth,
        max_text: limits.max_text,
        max_namespaces: limits.max_namespaces,
    };
    let mut doc = Doc::new(&input, NAMESPACE, NAMES, bounds)?;
    doc.root("isComposing")?;
    let mut state = None;
    let mut lastactive = None;
    let mut contenttype = None;
    let mut refresh = None;
    let mut extensions = Vec::new();
    let end = loop {
        match doc.next("isComposing")? {
            Item::Start { name, offset } => {
                let seen = match name {
                    "state" => state.is_some(),
                    "lastactive" => lastactive.is_some(),
                    "contenttype" => contenttype.is_some(),
                    "refresh" => refresh.is_some(),
                    other => {
                        return Err(IsComposingError::Misplaced {
                            element: other,
                            offset,
                        });
                    }
                };
                if seen {
                    return Err(IsComposingError::Duplicate {
                        element: name,
                        offset,
                    });
                }
                let text = trim_xml(&doc.text(name)?);
                match name {
                    "state" => state = Some(parse_state(&text, offset)?),
                    "lastactive" => lastactive = Some(text),
                    "contenttype" => contenttype = Some(text),
                    _ => refresh = Some(parse_refresh(&text, offset)?),
                }
            }
            Item::Extension { raw } => extensions.push(raw),
            Item::End { offset } => break offset,
        }
    };
    doc.finish()?;
    Ok(IsComposing {
        state: state.ok_or(IsComposingError::MissingState { offset: end })?,
        lastactive,
        contenttype,
        refresh,
        extensions,
    })
}

fn parse_state(text: &[u8], offset: usize) -> Result<State, IsComposingError> {
    if text.eq_ignore_ascii_case(b"active") {
        Ok(State::Active)
    } else if text.eq_ignore_ascii_case(b"idle") {
        Ok(State::Idle)
    } else {
        Err(IsComposingError::BadState {
            found: String::from_utf8_lossy(text).into_owned(),
            offset,
        })
    }
}

/// `xs:positiveInteger` (XML Schema 2 §3.3.25): optional `+`, digits, value at least 1.
fn parse_refresh(text: &[u8], offset: usize) -> Result<u32, IsComposingError> {
    let bad = || IsComposingError::BadRefresh {
        found: String::from_utf8_lossy(text).into_owned(),
        offset,
    };
    let digits = text.strip_prefix(b"+").unwrap_or(text);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let value = digits.iter().try_fold(0u32, |acc, d| {
        acc.checked_mul(10)?.checked_add(u32::from(d - b'0'))
    });
    match value {
        Some(v) if v > 0 => Ok(v),
        _ => Err(bad()),
    }
}

impl IsComposing {
    /// Parse with the default [`Limits`]; see [`parse`].
    pub fn parse(input: Bytes) -> Result<IsComposing, IsComposingError> {
        parse(input)
    }

    /// `active`, refreshed every `refresh` seconds when given (RFC 3994 §4: the receiver
    /// times out after it, 120 s when absent).
    pub fn active(refresh: Option<u32>) -> IsComposing {
        IsComposing {
            state: State::Active,
            lastactive: None,
            contenttype: None,
            refresh,
            extensions: Vec::new(),
        }
    }

    /// `idle`, with the time the user was last active when known.
    pub fn idle(lastactive: Option<Bytes>) -> IsComposing {
        IsComposing {
            state: State::Idle,
            lastactive,
            contenttype: None,
            refresh: None,
            extensions: Vec::new(),
        }
    }

    /// Set `<contenttype>`.
    pub fn with_contenttype(mut self, contenttype: impl Into<Bytes>) -> IsComposing {
        self.contenttype = Some(contenttype.into());
        self
    }

    /// How long the receiver keeps the active state without a refresh (RFC 3994 §4):
    /// `refresh`, or 120 s.
    pub fn active_timeout_secs(&self) -> u32 {
        self.refresh.unwrap_or(DEFAULT_ACTIVE_TIMEOUT_SECS)
    }

    /// The canonical body: UTF-8 declaration, default namespace, schema order.
    pub fn to_bytes(&self) -> Bytes {
        let ext: usize = self.extensions.iter().map(|e| e.len() + 4).sum();
        let mut out = Vec::with_capacity(
            200 + ext
                + self.lastactive.as_ref().map_or(0, |b| b.len() + 30)
                + self.contenttype.as_ref().map_or(0, |b| b.len() + 30),
        );
        self.write_to(&mut out);
        Bytes::from(out)
    }

    /// Append the canonical body to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(xml::DECLARATION);
        out.extend_from_slice(b"<isComposing xmlns=\"");
        out.extend_from_slice(NAMESPACE.as_bytes());
        out.extend_from_slice(b"\">\n");
        push_leaf(out, 2, "state", self.state.as_str().as_bytes());
        if let Some(v) = &self.lastactive {
            push_leaf(out, 2, "lastactive", v);
        }
        if let Some(v) = &self.contenttype {
            push_leaf(out, 2, "contenttype", v);
        }
        if let Some(r) = self.refresh {
            push_leaf(out, 2, "refresh", r.to_string().as_bytes());
        }
        for raw in &self.extensions {
            xml::push_indent(out, 2);
            out.extend_from_slice(raw);
            out.push(b'\n');
        }
        out.extend_from_slice(b"</isComposing>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<IsComposing, IsComposingError> {
        parse(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn parses_the_rfc_idle_example_with_its_schema_location() {
        let x = p(r#"<?xml version="1.0" encoding="UTF-8"?>
<isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="urn:ietf:params:xml:ns:im-composing iscomposing.xsd">
  <state>idle</state>
  <lastactive>2003-01-27T10:43:00Z</lastactive>
  <contenttype>audio</contenttype>
</isComposing>"#)
        .unwrap();
        assert_eq!(x.state, State::Idle);
        assert_eq!(x.lastactive.as_deref(), Some(&b"2003-01-27T10:43:00Z"[..]));
        assert_eq!(x.contenttype.as_deref(), Some(&b"audio"[..]));
        assert_eq!(x.refresh, None);
        assert_eq!(x.active_timeout_secs(), 120);
        assert_eq!(parse(x.to_bytes()).unwrap(), x);
    }

    #[test]
    fn builders() {
        let a = IsComposing::active(Some(60)).with_contenttype("text/plain");
        assert_eq!(
            String::from_utf8(a.to_bytes().to_vec()).unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <isComposing xmlns=\"urn:ietf:params:xml:ns:im-iscomposing\">\n  \
             <state>active</state>\n  <contenttype>text/plain</contenttype>\n  \
             <refresh>60</refresh>\n</isComposing>\n"
        );
        assert_eq!(parse(a.to_bytes()).unwrap(), a);
        let i = IsComposing::idle(Some("2026-01-01T00:00:00Z".into()));
        assert_eq!(parse(i.to_bytes()).unwrap(), i);
    }

    #[test]
    fn refresh_and_state_values() {
        let doc = |inner: &str| {
            format!(
                "<isComposing xmlns='urn:ietf:params:xml:ns:im-iscomposing'>{inner}</isComposing>"
            )
        };
        assert_eq!(
            p(&doc("<state> Active </state><refresh>+007</refresh>"))
                .unwrap()
                .refresh,
            Some(7)
        );
        // Kept with idle: the schema allows it.
        assert_eq!(
            p(&doc("<state>idle</state><refresh>5</refresh>"))
                .unwrap()
                .refresh,
            Some(5)
        );
        for bad in ["0", "-1", "", "1.5", "4294967296", "x"] {
            let err = p(&doc(&format!(
                "<state>active</state><refresh>{bad}</refresh>"
            )))
            .unwrap_err();
            assert!(
                matches!(err, IsComposingError::BadRefresh { .. }),
                "{bad}: {err}"
            );
        }
        assert_eq!(
            p(&doc("<state>active</state><refresh>4294967295</refresh>"))
                .unwrap()
                .refresh,
            Some(u32::MAX)
        );
        let err = p(&doc("<state>typing</state>")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "<state> is \"typing\", expected active or idle"
        );
        assert!(matches!(
            p(&doc("<refresh>5</refresh>")).unwrap_err(),
            IsComposingError::MissingState { .. }
        ));
        assert!(matches!(
            p(&doc("<state>idle</state><state>idle</state>")).unwrap_err(),
            IsComposingError::Duplicate { .. }
        ));
        assert!(matches!(
            p(&doc("<state>idle</state><timeout>1</timeout>")).unwrap_err(),
            IsComposingError::Xml(XmlError::UnknownElement { .. })
        ));
        let err = p(&doc("<state>idle</state><isComposing/>")).unwrap_err();
        assert!(matches!(err, IsComposingError::Misplaced { .. }));
    }

    #[test]
    fn extensions_and_namespace_case() {
        let x = p(
            "<c:isComposing xmlns:c='urn:ietf:params:xml:ns:IM-ISCOMPOSING' xmlns:v='urn:vendor'>\
                   <c:state>active</c:state><v:hint level='1'>x</v:hint></c:isComposing>",
        )
        .unwrap();
        assert_eq!(
            x.extensions,
            vec![Bytes::from_static(
                b"<v:hint xmlns:v=\"urn:vendor\" level='1'>x</v:hint>"
            )]
        );
        assert_eq!(parse(x.to_bytes()).unwrap(), x);
    }

    #[test]
    fn wrong_root_and_limits() {
        assert_eq!(
            p("<isComposing/>").unwrap_err().answer(),
            Answer::Status(415)
        );
        assert_eq!(
            p("<imdn xmlns='urn:ietf:params:xml:ns:imdn'/>")
                .unwrap_err()
                .answer(),
            Answer::Status(415)
        );
        let deep = format!(
            "<isComposing xmlns='urn:ietf:params:xml:ns:im-iscomposing'><state>idle</state>{}{}</isComposing>",
            "<x xmlns='u'>".repeat(10),
            "</x>".repeat(10)
        );
        assert_eq!(p(&deep).unwrap_err().answer(), Answer::Status(413));
    }
}
