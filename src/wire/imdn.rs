//! IMDN: the `message/imdn+xml` body of an Instant Message Disposition Notification
//! (RFC 5438 §11, schema §11.6, namespace `urn:ietf:params:xml:ns:imdn`).
//!
//! ```text
//! <imdn xmlns="urn:ietf:params:xml:ns:imdn">
//!   <message-id>34jk324j</message-id>            the original message's imdn.Message-ID
//!   <datetime>2008-04-04T12:16:49-05:00</datetime>  the original message's DateTime
//!   <recipient-uri>..</recipient-uri>              optional (§11.1.3)
//!   <original-recipient-uri>..</original-recipient-uri>  optional (§11.1.4)
//!   <subject>..</subject>                          optional (§11.1.5)
//!   <delivery-notification><status><delivered/></status></delivery-notification>
//! </imdn>
//! ```
//!
//! # What is accepted
//! - Namespaces are resolved by URI: any prefix works (`<i:imdn xmlns:i=...>`), and our
//!   namespace URI is matched without regard to ASCII case (clients copy it with a wrong case,
//!   PROTOCOL-NOTES.md). `xsi:schemaLocation` and other attributes are ignored, so a wrong
//!   schemaLocation copied from an example is harmless.
//! - The schema's `xs:sequence` order is not enforced, and `<recipient-uri>` may come without
//!   `<original-recipient-uri>` (the schema pairs them): neither changes meaning.
//! - Elements of other namespaces are kept as raw XML where they were found: under `<imdn>`
//!   ([`Imdn::extensions`]), under the notification element ([`Imdn::notification_extensions`])
//!   and under `<status>` ([`Imdn::status_extensions`], e.g. linphone's `<reason>`), each made
//!   self-contained (declarations of prefixes it borrowed from an ancestor are added to its
//!   start tag).
//!
//! # What is refused (400 unless said otherwise)
//! - Not well-formed XML, a `<!DOCTYPE>` (no DTD or entity is ever processed: no XXE), an
//!   undefined entity, a non-UTF-8 encoding (415).
//! - A root that is not `<imdn>` in the IMDN namespace (415: the content type promised IMDN and
//!   the body is another format, RFC 3261 §21.4.13).
//! - What would change meaning or make the notification unusable: a missing or empty
//!   `<message-id>` (§11.1.1: it is what correlates the notification), a missing `<datetime>`
//!   (required by the schema, §11.1.2), any element twice, no notification or two of them (the
//!   schema's `xs:choice`), a notification without `<status>`, a `<status>` with no value, two
//!   values, or a value the notification does not define (`<displayed/>` in a
//!   `<delivery-notification>`, §11.6), an element of the IMDN namespace that the schema does
//!   not define, text where only elements are allowed.
//! - Over the [`Limits`] (413).

use bytes::Bytes;

use super::{Answer, WireError};

use super::xml;

pub use xml::XmlError;
use xml::{Bounds, Doc, Item, push_indent, push_leaf, trim_xml};

/// The IMDN XML namespace (RFC 5438 §11.6).
pub const NAMESPACE: &str = "urn:ietf:params:xml:ns:imdn";
/// The MIME type of an IMDN body (RFC 5438 §13.3).
pub const CONTENT_TYPE: &str = "message/imdn+xml";

/// Local names of the IMDN namespace (RFC 5438 §11.6).
const NAMES: &[&str] = &[
    "imdn",
    "message-id",
    "datetime",
    "recipient-uri",
    "original-recipient-uri",
    "subject",
    "delivery-notification",
    "display-notification",
    "processing-notification",
    "status",
    "delivered",
    "failed",
    "forbidden",
    "error",
    "displayed",
    "processed",
    "stored",
];

/// Bounds on one IMDN body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest body, in bytes. Default 16 KiB (a real IMDN is under 1 KiB).
    pub max_size: usize,
    /// Most elements, extensions' descendants included. Default 64.
    pub max_elements: usize,
    /// Deepest nesting (`<imdn>` is 1, a status value 4). Default 12.
    pub max_depth: usize,
    /// Longest text value (`<message-id>`, a URI, `<subject>`), in bytes. Default 2048.
    pub max_text: usize,
    /// Most namespace declarations in scope at once. Default 16.
    pub max_namespaces: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_size: 16 * 1024,
            max_elements: 64,
            max_depth: 12,
            max_text: 2048,
            max_namespaces: 16,
        }
    }
}

impl Limits {
    fn bounds(&self) -> Bounds {
        Bounds {
            max_size: self.max_size,
            max_elements: self.max_elements,
            max_depth: self.max_depth,
            max_text: self.max_text,
            max_namespaces: self.max_namespaces,
        }
    }
}

/// `<delivery-notification>` status values (RFC 5438 §11.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    Delivered,
    Failed,
    Forbidden,
    Error,
}

/// `<display-notification>` status values (RFC 5438 §11.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisplayStatus {
    Displayed,
    Forbidden,
    Error,
}

/// `<processing-notification>` status values (RFC 5438 §11.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcessingStatus {
    Processed,
    Stored,
    Forbidden,
    Error,
}

/// The one notification an IMDN carries, with its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Notification {
    Delivery(DeliveryStatus),
    Display(DisplayStatus),
    Processing(ProcessingStatus),
}

impl Notification {
    /// The element name: `delivery-notification`, `display-notification` or
    /// `processing-notification`.
    pub fn element(&self) -> &'static str {
        match self {
            Notification::Delivery(_) => "delivery-notification",
            Notification::Display(_) => "display-notification",
            Notification::Processing(_) => "processing-notification",
        }
    }

    /// The status element name (`delivered`, `displayed`, `stored`, ...).
    pub fn status(&self) -> &'static str {
        match self {
            Notification::Delivery(s) => match s {
                DeliveryStatus::Delivered => "delivered",
                DeliveryStatus::Failed => "failed",
                DeliveryStatus::Forbidden => "forbidden",
                DeliveryStatus::Error => "error",
            },
            Notification::Display(s) => match s {
                DisplayStatus::Displayed => "displayed",
                DisplayStatus::Forbidden => "forbidden",
                DisplayStatus::Error => "error",
            },
            Notification::Processing(s) => match s {
                ProcessingStatus::Processed => "processed",
                ProcessingStatus::Stored => "stored",
                ProcessingStatus::Forbidden => "forbidden",
                ProcessingStatus::Error => "error",
            },
        }
    }

    /// The `imdn.Disposition-Notification` value that requested this notification
    /// (RFC 5438 §6.2, §7.2.1): `positive-delivery` for `delivered`, `negative-delivery` for
    /// the other delivery statuses, `display`, `processing`.
    pub fn disposition(&self) -> &'static str {
        match self {
            Notification::Delivery(DeliveryStatus::Delivered) => "positive-delivery",
            Notification::Delivery(_) => "negative-delivery",
            Notification::Display(_) => "display",
            Notification::Processing(_) => "processing",
        }
    }

    /// Whether the status reports success: `delivered`, `displayed`, `processed` or `stored`
    /// (the others are `failed`, `forbidden` and `error`).
    pub fn is_positive(&self) -> bool {
        matches!(
            self,
            Notification::Delivery(DeliveryStatus::Delivered)
                | Notification::Display(DisplayStatus::Displayed)
                | Notification::Processing(ProcessingStatus::Processed | ProcessingStatus::Stored)
        )
    }

    /// Map a status element name inside the notification element `kind` to the model.
    fn from_names(kind: &str, status: &str) -> Option<Notification> {
        Some(match (kind, status) {
            ("delivery-notification", "delivered") => {
                Notification::Delivery(DeliveryStatus::Delivered)
            }
            ("delivery-notification", "failed") => Notification::Delivery(DeliveryStatus::Failed),
            ("delivery-notification", "forbidden") => {
                Notification::Delivery(DeliveryStatus::Forbidden)
            }
            ("delivery-notification", "error") => Notification::Delivery(DeliveryStatus::Error),
            ("display-notification", "displayed") => {
                Notification::Display(DisplayStatus::Displayed)
            }
            ("display-notification", "forbidden") => {
                Notification::Display(DisplayStatus::Forbidden)
            }
            ("display-notification", "error") => Notification::Display(DisplayStatus::Error),
            ("processing-notification", "processed") => {
                Notification::Processing(ProcessingStatus::Processed)
            }
            ("processing-notification", "stored") => {
                Notification::Processing(ProcessingStatus::Stored)
            }
            ("processing-notification", "forbidden") => {
                Notification::Processing(ProcessingStatus::Forbidden)
            }
            ("processing-notification", "error") => {
                Notification::Processing(ProcessingStatus::Error)
            }
            _ => return None,
        })
    }

    fn expected(kind: &str) -> &'static str {
        match kind {
            "delivery-notification" => "<delivered>, <failed>, <forbidden>, <error>",
            "display-notification" => "<displayed>, <forbidden>, <error>",
            _ => "<processed>, <stored>, <forbidden>, <error>",
        }
    }
}

/// One IMDN (RFC 5438 §11). Text values are unescaped; they are slices of the parsed input
/// unless unescaping changed them. Values must be UTF-8 text to serialize to valid XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imdn {
    /// `<message-id>`: the `imdn.Message-ID` of the message this notification is about.
    pub message_id: Bytes,
    /// `<datetime>`: the `DateTime` of that message (RFC 3339 text, not checked).
    pub datetime: Bytes,
    /// `<recipient-uri>`: the recipient that generated the notification.
    pub recipient_uri: Option<Bytes>,
    /// `<original-recipient-uri>`: the recipient the sender addressed.
    pub original_recipient_uri: Option<Bytes>,
    /// `<subject>`: the subject of the original message (not trimmed).
    pub subject: Option<Bytes>,
    /// The notification and its status.
    pub notification: Notification,
    /// Elements of other namespaces inside `<status>` (linphone `<reason>`), raw XML.
    ///
    /// Every extension is one well-formed element that declares every namespace prefix it
    /// uses (the parser guarantees it; a caller that builds one must too), so that it can be
    /// written under any parent.
    pub status_extensions: Vec<Bytes>,
    /// Elements of other namespaces inside the notification element, outside `<status>`.
    pub notification_extensions: Vec<Bytes>,
    /// Elements of other namespaces directly under `<imdn>` (GSMA, vendors), raw XML.
    pub extensions: Vec<Bytes>,
}

/// Why an IMDN body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImdnError {
    /// Malformed XML, wrong root or namespace, or over a limit.
    #[error(transparent)]
    Xml(#[from] XmlError),
    /// A required element is absent.
    #[error("<{parent}> has no <{element}>")]
    Missing {
        element: &'static str,
        parent: &'static str,
        offset: usize,
    },
    /// `<message-id>` is present but empty: nothing to correlate with (RFC 5438 §11.1.1).
    #[error("<message-id> is empty")]
    EmptyMessageId { offset: usize },
    /// An element that may appear once appears twice.
    #[error("<{element}> appears twice in <{parent}>")]
    Duplicate {
        element: &'static str,
        parent: &'static str,
        offset: usize,
    },
    /// An IMDN element in a place the schema does not allow.
    #[error("<{element}> is not allowed inside <{parent}>")]
    Misplaced {
        element: &'static str,
        parent: &'static str,
        offset: usize,
    },
    /// No notification element (RFC 5438 §11.6 `xs:choice`).
    #[error(
        "<imdn> has no <delivery-notification>, <display-notification> or <processing-notification>"
    )]
    NoNotification { offset: usize },
    /// Two notification elements: the schema allows exactly one.
    #[error("<imdn> has two notifications: <{first}> and <{second}>")]
    TwoNotifications {
        first: &'static str,
        second: &'static str,
        offset: usize,
    },
    /// `<status>` without a status value.
    #[error("<status> of <{notification}> has no status value (expected one of {expected})")]
    NoStatusValue {
        notification: &'static str,
        expected: &'static str,
        offset: usize,
    },
    /// A status value the notification does not define.
    #[error("<{status}> is not a status of <{notification}> (expected one of {expected})")]
    WrongStatus {
        status: &'static str,
        notification: &'static str,
        expected: &'static str,
        offset: usize,
    },
    /// Two status values in one `<status>`.
    #[error("<status> of <{notification}> has two values: <{first}> and <{second}>")]
    TwoStatusValues {
        notification: &'static str,
        first: &'static str,
        second: &'static str,
        offset: usize,
    },
}

impl WireError for ImdnError {
    fn answer(&self) -> Answer {
        match self {
            ImdnError::Xml(e) => e.answer(),
            _ => Answer::Status(400),
        }
    }

    fn offset(&self) -> Option<usize> {
        match self {
            ImdnError::Xml(e) => e.offset(),
            ImdnError::Missing { offset, .. }
            | ImdnError::EmptyMessageId { offset }
            | ImdnError::Duplicate { offset, .. }
            | ImdnError::Misplaced { offset, .. }
            | ImdnError::NoNotification { offset }
            | ImdnError::TwoNotifications { offset, .. }
            | ImdnError::NoStatusValue { offset, .. }
            | ImdnError::WrongStatus { offset, .. }
            | ImdnError::TwoStatusValues { offset, .. } => Some(*offset),
        }
    }
}

/// Parse an IMDN body with the default [`Limits`].
pub fn parse(input: Bytes) -> Result<Imdn, ImdnError> {
    parse_with(input, &Limits::default())
}

/// Parse an IMDN body.
pub fn parse_with(input: Bytes, limits: &Limits) -> Result<Imdn, ImdnError> {
    let mut doc = Doc::new(&input, NAMESPACE, NAMES, limits.bounds())?;
    doc.root("imdn")?;
    let mut message_id: Option<(Bytes, usize)> = None;
    let mut datetime = None;
    let mut recipient_uri = None;
    let mut original_recipient_uri = None;
    let mut subject = None;
    let mut notification: Option<(Notification, &'static str)> = None;
    let mut status_extensions = Vec::new();
    let mut notification_extensions = Vec::new();
    let mut extensions = Vec::new();

    let end = loop {
        match doc.next("imdn")? {
            Item::Start { name, offset } => {
                let slot = match name {
                    "message-id" => {
                        if message_id.is_some() {
                            return Err(dup(name, "imdn", offset));
                        }
                        message_id = Some((trim_xml(&doc.text(name)?), offset));
                        continue;
                    }
                    "datetime" => &mut datetime,
                    "recipient-uri" => &mut recipient_uri,
                    "original-recipient-uri" => &mut original_recipient_uri,
                    "subject" => {
                        if subject.is_some() {
                            return Err(dup(name, "imdn", offset));
                        }
                        // Free text (xs:string): kept as written.
                        subject = Some(doc.text(name)?);
                        continue;
                    }
                    "delivery-notification"
                    | "display-notification"
                    | "processing-notification" => {
                        if let Some((_, first)) = notification {
                            return Err(ImdnError::TwoNotifications {
                                first,
                                second: name,
                                offset,
                            });
                        }
                        let n = parse_notification(
                            &mut doc,
                            name,
                            offset,
                            &mut status_extensions,
                            &mut notification_extensions,
                        )?;
                        notification = Some((n, name));
                        continue;
                    }
                    other => {
                        return Err(ImdnError::Misplaced {
                            element: other,
                            parent: "imdn",
                            offset,
                        });
                    }
                };
                if slot.is_some() {
                    return Err(dup(name, "imdn", offset));
                }
                *slot = Some(trim_xml(&doc.text(name)?));
            }
            Item::Extension { raw } => extensions.push(raw),
            Item::End { offset } => break offset,
        }
    };
    doc.finish()?;

    let (message_id, at) = message_id.ok_or(ImdnError::Missing {
        element: "message-id",
        parent: "imdn",
        offset: end,
    })?;
    if message_id.is_empty() {
        return Err(ImdnError::EmptyMessageId { offset: at });
    }
    let datetime = datetime.ok_or(ImdnError::Missing {
        element: "datetime",
        parent: "imdn",
        offset: end,
    })?;
    let (notification, _) = notification.ok_or(ImdnError::NoNotification { offset: end })?;
    Ok(Imdn {
        message_id,
        datetime,
        recipient_uri,
        original_recipient_uri,
        subject,
        notification,
        status_extensions,
        notification_extensions,
        extensions,
    })
}

fn dup(element: &'static str, parent: &'static str, offset: usize) -> ImdnError {
    ImdnError::Duplicate {
        element,
        parent,
        offset,
    }
}

/// The inside of `<delivery-notification>` etc. (`kind`), whose start tag is consumed.
fn parse_notification(
    doc: &mut Doc<'_>,
    kind: &'static str,
    kind_offset: usize,
    status_extensions: &mut Vec<Bytes>,
    notification_extensions: &mut Vec<Bytes>,
) -> Result<Notification, ImdnError> {
    let mut found: Option<Notification> = None;
    loop {
        match doc.next(kind)? {
            Item::Start {
                name: "status",
                offset,
            } => {
                if found.is_some() {
                    return Err(dup("status", kind, offset));
                }
                found = Some(parse_status(doc, kind, offset, status_extensions)?);
            }
            Item::Start { name, offset } => {
                return Err(ImdnError::Misplaced {
                    element: name,
                    parent: kind,
                    offset,
                });
            }
            Item::Extension { raw } => notification_extensions.push(raw),
            Item::End { .. } => break,
        }
    }
    found.ok_or(ImdnError::Missing {
        element: "status",
        parent: kind,
        offset: kind_offset,
    })
}

/// The inside of `<status>` in the notification `kind`.
fn parse_status(
    doc: &mut Doc<'_>,
    kind: &'static str,
    status_offset: usize,
    status_extensions: &mut Vec<Bytes>,
) -> Result<Notification, ImdnError> {
    let mut found: Option<(Notification, &'static str)> = None;
    loop {
        match doc.next("status")? {
            Item::Start { name, offset } => {
                let Some(n) = Notification::from_names(kind, name) else {
                    let is_status = matches!(
                        name,
                        "delivered"
                            | "failed"
                            | "forbidden"
                            | "error"
                            | "displayed"
                            | "processed"
                            | "stored"
                    );
                    return Err(if is_status {
                        ImdnError::WrongStatus {
                            status: name,
                            notification: kind,
                            expected: Notification::expected(kind),
                            offset,
                        }
                    } else {
                        ImdnError::Misplaced {
                            element: name,
                            parent: "status",
                            offset,
                        }
                    });
                };
                if let Some((_, first)) = found {
                    return Err(ImdnError::TwoStatusValues {
                        notification: kind,
                        first,
                        second: name,
                        offset,
                    });
                }
                doc.empty(name)?;
                found = Some((n, name));
            }
            Item::Extension { raw } => status_extensions.push(raw),
            Item::End { .. } => break,
        }
    }
    found.map(|(n, _)| n).ok_or(ImdnError::NoStatusValue {
        notification: kind,
        expected: Notification::expected(kind),
        offset: status_offset,
    })
}

impl Imdn {
    /// Parse with the default [`Limits`]; see [`parse`].
    pub fn parse(input: Bytes) -> Result<Imdn, ImdnError> {
        parse(input)
    }

    /// A notification about message `message_id` sent at `datetime`, with no optional
    /// element and no extension.
    pub fn new(
        message_id: impl Into<Bytes>,
        datetime: impl Into<Bytes>,
        notification: Notification,
    ) -> Imdn {
        Imdn {
            message_id: message_id.into(),
            datetime: datetime.into(),
            recipient_uri: None,
            original_recipient_uri: None,
            subject: None,
            notification,
            status_extensions: Vec::new(),
            notification_extensions: Vec::new(),
            extensions: Vec::new(),
        }
    }

    fn with_recipient(mut self, recipient: Option<Bytes>) -> Imdn {
        self.recipient_uri = recipient;
        self
    }

    /// `<delivered/>` by `recipient` (the `<recipient-uri>`, when known).
    pub fn delivered(
        message_id: impl Into<Bytes>,
        datetime: impl Into<Bytes>,
        recipient: Option<Bytes>,
    ) -> Imdn {
        Imdn::new(
            message_id,
            datetime,
            Notification::Delivery(DeliveryStatus::Delivered),
        )
        .with_recipient(recipient)
    }

    /// A negative delivery notification (`<failed/>`, `<forbidden/>` or `<error/>`).
    pub fn delivery_failed(
        message_id: impl Into<Bytes>,
        datetime: impl Into<Bytes>,
        recipient: Option<Bytes>,
        status: DeliveryStatus,
    ) -> Imdn {
        Imdn::new(message_id, datetime, Notification::Delivery(status)).with_recipient(recipient)
    }

    /// `<displayed/>` by `recipient`.
    pub fn displayed(
        message_id: impl Into<Bytes>,
        datetime: impl Into<Bytes>,
        recipient: Option<Bytes>,
    ) -> Imdn {
        Imdn::new(
            message_id,
            datetime,
            Notification::Display(DisplayStatus::Displayed),
        )
        .with_recipient(recipient)
    }

    /// A processing notification (`<processed/>`, `<stored/>`, ...), e.g. from the IWF's
    /// store-and-forward when it keeps a message for an unavailable user (§8.1).
    pub fn processing(
        message_id: impl Into<Bytes>,
        datetime: impl Into<Bytes>,
        recipient: Option<Bytes>,
        status: ProcessingStatus,
    ) -> Imdn {
        Imdn::new(message_id, datetime, Notification::Processing(status)).with_recipient(recipient)
    }

    /// Set `<original-recipient-uri>`.
    pub fn with_original_recipient(mut self, uri: impl Into<Bytes>) -> Imdn {
        self.original_recipient_uri = Some(uri.into());
        self
    }

    /// Set `<subject>`.
    pub fn with_subject(mut self, subject: impl Into<Bytes>) -> Imdn {
        self.subject = Some(subject.into());
        self
    }

    /// The canonical body: UTF-8 declaration, default namespace, two-space indentation, the
    /// schema's element order, extensions as they were parsed (each self-contained).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.encoded_len_hint());
        self.write_to(&mut out);
        Bytes::from(out)
    }

    fn encoded_len_hint(&self) -> usize {
        let opt = |o: &Option<Bytes>| o.as_ref().map_or(0, |b| b.len() + 60);
        let ext = |v: &Vec<Bytes>| v.iter().map(|b| b.len() + 8).sum::<usize>();
        220 + self.message_id.len()
            + self.datetime.len()
            + opt(&self.recipient_uri)
            + opt(&self.original_recipient_uri)
            + opt(&self.subject)
            + ext(&self.status_extensions)
            + ext(&self.notification_extensions)
            + ext(&self.extensions)
    }

    /// Append the canonical body to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(xml::DECLARATION);
        out.extend_from_slice(b"<imdn xmlns=\"");
        out.extend_from_slice(NAMESPACE.as_bytes());
        out.extend_from_slice(b"\">\n");
        push_leaf(out, 2, "message-id", &self.message_id);
        push_leaf(out, 2, "datetime", &self.datetime);
        if let Some(v) = &self.recipient_uri {
            push_leaf(out, 2, "recipient-uri", v);
        }
        if let Some(v) = &self.original_recipient_uri {
            push_leaf(out, 2, "original-recipient-uri", v);
        }
        if let Some(v) = &self.subject {
            push_leaf(out, 2, "subject", v);
        }
        let kind = self.notification.element();
        push_indent(out, 2);
        push_tag(out, kind, false);
        push_indent(out, 4);
        out.extend_from_slice(b"<status>\n");
        push_indent(out, 6);
        out.push(b'<');
        out.extend_from_slice(self.notification.status().as_bytes());
        out.extend_from_slice(b"/>\n");
        push_raw(out, 6, &self.status_extensions);
        push_indent(out, 4);
        out.extend_from_slice(b"</status>\n");
        push_raw(out, 4, &self.notification_extensions);
        push_indent(out, 2);
        push_tag(out, kind, true);
        push_raw(out, 2, &self.extensions);
        out.extend_from_slice(b"</imdn>\n");
    }
}

fn push_tag(out: &mut Vec<u8>, name: &str, end: bool) {
    out.extend_from_slice(if end { b"</" } else { b"<" });
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b">\n");
}

fn push_raw(out: &mut Vec<u8>, indent: usize, raws: &[Bytes]) {
    for raw in raws {
        push_indent(out, indent);
        out.extend_from_slice(raw);
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Imdn, ImdnError> {
        parse(Bytes::copy_from_slice(s.as_bytes()))
    }

    const DELIVERED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<imdn xmlns="urn:ietf:params:xml:ns:imdn">
  <message-id>34jk324j</message-id>
  <datetime>2008-04-04T12:16:49-05:00</datetime>
  <recipient-uri>im:bob@example.com</recipient-uri>
  <original-recipient-uri
      >im:bob@example.com</original-recipient-uri>
  <delivery-notification>
    <status>
      <delivered/>
    </status>
  </delivery-notification>
</imdn>
"#;

    #[test]
    fn parses_the_rfc_shape() {
        let input = Bytes::from_static(DELIVERED.as_bytes());
        let imdn = parse(input.clone()).unwrap();
        assert_eq!(&imdn.message_id[..], b"34jk324j");
        assert_eq!(&imdn.datetime[..], b"2008-04-04T12:16:49-05:00");
        assert_eq!(
            imdn.recipient_uri.as_deref(),
            Some(&b"im:bob@example.com"[..])
        );
        assert_eq!(
            imdn.original_recipient_uri.as_deref(),
            Some(&b"im:bob@example.com"[..])
        );
        assert_eq!(
            imdn.notification,
            Notification::Delivery(DeliveryStatus::Delivered)
        );
        assert_eq!(imdn.notification.disposition(), "positive-delivery");
        assert!(imdn.notification.is_positive());
        assert!(!Notification::Display(DisplayStatus::Forbidden).is_positive());
        // Values are slices of the input, not copies.
        let at = DELIVERED.find("34jk324j").unwrap();
        assert_eq!(imdn.message_id.as_ptr(), input[at..].as_ptr());
        // Canonical output of an RFC-shaped body is the same document.
        assert_eq!(parse(imdn.to_bytes()).unwrap(), imdn);
    }

    #[test]
    fn builders_serialize_canonically() {
        let imdn = Imdn::displayed("abc", "2026-01-01T00:00:00Z", Some("sip:b@x".into()));
        let text = String::from_utf8(imdn.to_bytes().to_vec()).unwrap();
        assert_eq!(
            text,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <imdn xmlns=\"urn:ietf:params:xml:ns:imdn\">\n  \
             <message-id>abc</message-id>\n  \
             <datetime>2026-01-01T00:00:00Z</datetime>\n  \
             <recipient-uri>sip:b@x</recipient-uri>\n  \
             <display-notification>\n    <status>\n      <displayed/>\n    </status>\n  \
             </display-notification>\n</imdn>\n"
        );
        assert_eq!(parse(imdn.to_bytes()).unwrap(), imdn);
        let s = Imdn::processing("a<&>", "d", None, ProcessingStatus::Stored)
            .with_subject(" hi\r\n ")
            .with_original_recipient("tel:+1");
        assert_eq!(parse(s.to_bytes()).unwrap(), s);
    }

    #[test]
    fn extensions_are_kept_self_contained() {
        let xml = r#"<imdn xmlns="urn:ietf:params:xml:ns:imdn" xmlns:linphone="http://www.linphone.org/xsds/imdn.xsd">
<message-id>m</message-id><datetime>d</datetime>
<delivery-notification><status><error/><linphone:reason code="488">Not acceptable here</linphone:reason></status></delivery-notification>
<g:revoke xmlns:g="urn:gsma:params:xml:ns:rcs:rcs:imdn"/>
</imdn>"#;
        let imdn = p(xml).unwrap();
        assert_eq!(
            imdn.notification,
            Notification::Delivery(DeliveryStatus::Error)
        );
        assert_eq!(
            imdn.status_extensions,
            vec![Bytes::from_static(
                b"<linphone:reason xmlns:linphone=\"http://www.linphone.org/xsds/imdn.xsd\" code=\"488\">Not acceptable here</linphone:reason>"
            )]
        );
        assert_eq!(
            imdn.extensions,
            vec![Bytes::from_static(
                b"<g:revoke xmlns:g=\"urn:gsma:params:xml:ns:rcs:rcs:imdn\"/>"
            )]
        );
        assert_eq!(parse(imdn.to_bytes()).unwrap(), imdn);
    }

    #[test]
    fn lenient_on_prefix_case_and_order() {
        let xml = r#"<i:imdn xmlns:i="URN:IETF:PARAMS:XML:NS:IMDN" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="urn:ietf:params:xml:ns:im-imdn imdn.xsd">
<i:display-notification><i:status><i:displayed/></i:status></i:display-notification>
<i:datetime>d</i:datetime><i:message-id> m </i:message-id></i:imdn>"#;
        let imdn = p(xml).unwrap();
        assert_eq!(&imdn.message_id[..], b"m");
        assert_eq!(
            imdn.notification,
            Notification::Display(DisplayStatus::Displayed)
        );
    }

    #[test]
    fn strict_where_meaning_changes() {
        let wrap =
            |inner: &str| format!("<imdn xmlns='urn:ietf:params:xml:ns:imdn'>{inner}</imdn>");
        let ok_n = "<delivery-notification><status><delivered/></status></delivery-notification>";
        let cases: Vec<(String, &str)> = vec![
            (
                wrap(&format!("<datetime>d</datetime>{ok_n}")),
                "has no <message-id>",
            ),
            (
                wrap(&format!(
                    "<message-id> </message-id><datetime>d</datetime>{ok_n}"
                )),
                "<message-id> is empty",
            ),
            (
                wrap(&format!("<message-id>m</message-id>{ok_n}")),
                "has no <datetime>",
            ),
            (
                wrap("<message-id>m</message-id><datetime>d</datetime>"),
                "has no <delivery-notification>",
            ),
            (
                wrap(&format!(
                    "<message-id>m</message-id><message-id>n</message-id><datetime>d</datetime>{ok_n}"
                )),
                "appears twice",
            ),
            (
                wrap(&format!(
                    "<message-id>m</message-id><datetime>d</datetime>{ok_n}<display-notification><status><displayed/></status></display-notification>"
                )),
                "two notifications",
            ),
            (
                wrap(
                    "<message-id>m</message-id><datetime>d</datetime><delivery-notification></delivery-notification>",
                ),
                "has no <status>",
            ),
            (
                wrap(
                    "<message-id>m</message-id><datetime>d</datetime><delivery-notification><status/></delivery-notification>",
                ),
                "has no status value",
            ),
            (
                wrap(
                    "<message-id>m</message-id><datetime>d</datetime><delivery-notification><status><displayed/></status></delivery-notification>",
                ),
                "<displayed> is not a status of <delivery-notification>",
            ),
            (
                wrap(
                    "<message-id>m</message-id><datetime>d</datetime><delivery-notification><status><delivered/><failed/></status></delivery-notification>",
                ),
                "two values",
            ),
            (
                wrap(
                    "<message-id>m</message-id><datetime>d</datetime><delivery-notification><status><delivered/></status></delivery-notification><status/>",
                ),
                "<status> is not allowed inside <imdn>",
            ),
            (
                wrap(
                    "<message-id>m</message-id><datetime>d</datetime><delivery-notification><status><read/></status></delivery-notification>",
                ),
                "unknown element <read>",
            ),
            (
                wrap("<message-id>m<b/></message-id>"),
                "not allowed inside <message-id>",
            ),
            (
                wrap(
                    "<message-id>m</message-id><datetime>d</datetime><delivery-notification><status><delivered>x</delivered></status></delivery-notification>",
                ),
                "text is not allowed",
            ),
        ];
        for (xml, want) in cases {
            let err = p(&xml).unwrap_err();
            assert_eq!(err.answer(), Answer::Status(400), "{xml}");
            assert!(err.to_string().contains(want), "{xml}: {err}");
            assert!(err.offset().is_some());
        }
    }

    #[test]
    fn wrong_root_is_415_and_limits_413() {
        let err = p("<isComposing xmlns='urn:ietf:params:xml:ns:im-iscomposing'/>").unwrap_err();
        assert_eq!(err.answer(), Answer::Status(415));
        let err = p("<imdn><message-id>m</message-id></imdn>").unwrap_err();
        assert_eq!(err.answer(), Answer::Status(415));
        let big = Bytes::from(vec![b' '; 16 * 1024 + 1]);
        assert_eq!(parse(big).unwrap_err().answer(), Answer::Status(413));
        let limits = Limits {
            max_text: 4,
            ..Limits::default()
        };
        let err = parse_with(Bytes::from_static(DELIVERED.as_bytes()), &limits).unwrap_err();
        assert_eq!(err.answer(), Answer::Status(413));
    }

    #[test]
    fn garbage_never_panics() {
        for s in [
            "",
            "<",
            "<imdn",
            "<imdn xmlns='urn:ietf:params:xml:ns:imdn'>",
            "\u{feff}",
            "<?xml?>",
            "<!--",
            "<![CDATA[",
            "&",
            "<a:b/>",
            "<imdn xmlns='urn:ietf:params:xml:ns:imdn'><x:y xmlns:x='u'>",
        ] {
            let _ = p(s);
        }
    }
}
