//! A small pull reader over quick-xml's `NsReader` shared by the IMDN and isComposing codecs.
//!
//! Both formats are tiny documents of one namespace with extension elements from other
//! namespaces (RFC 5438 §11.6 and RFC 3994 §7 schemas: `<xs:any namespace="##other">`). This
//! module gives the codecs a typed walk over such a document:
//!
//! - elements of the codec's namespace come as [`Item::Start`] with their `&'static` local name
//!   (an element of that namespace the codec does not know is an error);
//! - elements of any other namespace come as [`Item::Extension`] holding the raw XML of the whole
//!   element: a slice of the input, or, when it used namespace prefixes declared on an ancestor,
//!   a copy with those declarations added to its start tag so that it stands on its own;
//! - namespaces are resolved by URI (prefixes are aliases, XML Namespaces 1.0 §6), our namespace
//!   URI is compared without regard to ASCII case (a client mistake seen in the wild);
//! - no DTD is accepted (`<!DOCTYPE` is an error), so no entity is ever declared or expanded
//!   (no XXE, no "billion laughs"); only the five predefined entities and character references
//!   are resolved (XML 1.0 §4.6, §4.1);
//! - everything is bounded: body size, element count, nesting depth, text length and namespace
//!   declarations.
//!
//! Offsets in errors are byte offsets into the input given to [`Doc::new`].

use std::borrow::Cow;

use bytes::Bytes;
use quick_xml::events::Event;
use quick_xml::name::{QName, ResolveResult};
use quick_xml::reader::NsReader;

use super::{Answer, WireError};

/// Bounds on one document, copied from the codec's `Limits`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub max_size: usize,
    pub max_elements: usize,
    pub max_depth: usize,
    pub max_text: usize,
    pub max_namespaces: usize,
}

/// What can go wrong reading an XML body, whatever its vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// The body is larger than the configured limit.
    #[error("body is {len} bytes, over the limit of {max}")]
    TooLarge { len: usize, max: usize },
    /// Not well-formed XML (quick-xml's reason).
    #[error("malformed XML: {reason}")]
    Malformed { offset: usize, reason: String },
    /// A document type declaration: never processed, always refused.
    #[error("<!DOCTYPE> is not allowed (no DTD or entity declaration is ever processed)")]
    Doctype { offset: usize },
    /// An entity reference that is neither predefined nor a character reference.
    #[error("undefined entity &{name};")]
    UndefinedEntity { offset: usize, name: String },
    /// The XML declaration names an encoding other than UTF-8.
    #[error("encoding {encoding:?} is not supported (only UTF-8)")]
    Encoding { offset: usize, encoding: String },
    /// The root element is not the one the content type promised.
    #[error("root element is {found}, expected <{expected}> in namespace {namespace}")]
    WrongRoot {
        offset: usize,
        found: String,
        expected: &'static str,
        namespace: &'static str,
    },
    /// No root element at all.
    #[error("no root element")]
    NoRoot { offset: usize },
    /// An element of our namespace that the schema does not define.
    #[error("unknown element <{name}> in namespace {namespace}")]
    UnknownElement {
        offset: usize,
        name: String,
        namespace: &'static str,
    },
    /// Character data where the schema allows only elements.
    #[error("text is not allowed directly inside <{parent}>")]
    Text { offset: usize, parent: &'static str },
    /// A child element inside an element that holds only text.
    #[error("element <{name}> is not allowed inside <{parent}>")]
    ChildNotAllowed {
        offset: usize,
        name: String,
        parent: &'static str,
    },
    /// Elements, comments or text after the root element.
    #[error("content after the end of the root element")]
    TrailingContent { offset: usize },
    /// More elements than the configured limit.
    #[error("more than {max} elements")]
    TooManyElements { offset: usize, max: usize },
    /// Elements nested deeper than the configured limit.
    #[error("elements nested deeper than {max} levels")]
    TooDeep { offset: usize, max: usize },
    /// More namespace declarations in scope than the configured limit.
    #[error("more than {max} namespaces declared in scope or borrowed by one extension element")]
    TooManyNamespaces { offset: usize, max: usize },
    /// A text value longer than the configured limit.
    #[error("text of <{element}> is longer than {max} bytes")]
    TextTooLong {
        offset: usize,
        element: &'static str,
        max: usize,
    },
}

impl WireError for XmlError {
    /// Size-type limits answer 413 (RFC 3261 §21.4.11, RFC 4975 §7.3); a body that is XML but
    /// not the promised vocabulary or charset answers 415 (RFC 3261 §21.4.13: "the message body
    /// of the request is in a format not supported"); everything else is a malformed body, 400.
    fn answer(&self) -> Answer {
        match self {
            XmlError::TooLarge { .. }
            | XmlError::TooManyElements { .. }
            | XmlError::TooDeep { .. }
            | XmlError::TooManyNamespaces { .. }
            | XmlError::TextTooLong { .. } => Answer::Status(413),
            XmlError::WrongRoot { .. } | XmlError::Encoding { .. } => Answer::Status(415),
            _ => Answer::Status(400),
        }
    }

    fn offset(&self) -> Option<usize> {
        match self {
            XmlError::TooLarge { .. } => None,
            XmlError::Malformed { offset, .. }
            | XmlError::Doctype { offset }
            | XmlError::UndefinedEntity { offset, .. }
            | XmlError::Encoding { offset, .. }
            | XmlError::WrongRoot { offset, .. }
            | XmlError::NoRoot { offset }
            | XmlError::UnknownElement { offset, .. }
            | XmlError::Text { offset, .. }
            | XmlError::ChildNotAllowed { offset, .. }
            | XmlError::TrailingContent { offset }
            | XmlError::TooManyElements { offset, .. }
            | XmlError::TooDeep { offset, .. }
            | XmlError::TooManyNamespaces { offset, .. }
            | XmlError::TextTooLong { offset, .. } => Some(*offset),
        }
    }
}

/// One step of the walk inside an element of our namespace.
#[derive(Debug)]
pub(crate) enum Item {
    /// An element of our namespace started; `name` is its local name.
    Start { name: &'static str, offset: usize },
    /// The current element ended.
    End { offset: usize },
    /// A whole element of another namespace (already consumed), as self-contained raw XML.
    Extension { raw: Bytes },
}

/// Namespace class of an element name.
enum Class {
    Ours,
    Other,
    Undeclared(String),
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// A document being walked. See the module documentation.
pub(crate) struct Doc<'a> {
    input: &'a Bytes,
    cur: Cursor<'a>,
    namespace: &'static str,
    names: &'static [&'static str],
    bounds: Bounds,
}

#[inline]
pub(crate) fn is_xml_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// XML 1.0 §2.2 `Char` (surrogates cannot be a `char`).
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// `b` without leading and trailing XML white space (XML 1.0 §2.3 `S`), as a slice of `b`.
pub(crate) fn trim_xml(b: &Bytes) -> Bytes {
    let start = b.iter().position(|c| !is_xml_ws(*c)).unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !is_xml_ws(*c))
        .map_or(start, |i| i + 1);
    if start == 0 && end == b.len() {
        b.clone()
    } else {
        b.slice(start..end)
    }
}

/// The reading core every XML body of the crate shares (IMDN, isComposing here, reginfo in
/// `wire::reginfo`): a namespace-aware reader over the body (a UTF-8 BOM skipped), with the
/// size, element, depth and namespace bounds, and the absolute offset of the last event for
/// error messages.
pub(crate) struct Cursor<'a> {
    input: &'a Bytes,
    pub(crate) reader: NsReader<&'a [u8]>,
    /// Offset of the reader's first byte in the input (3 after a UTF-8 BOM).
    pub(crate) base: usize,
    bounds: Bounds,
    elements: usize,
    /// Elements open now.
    pub(crate) depth: usize,
    /// Absolute offset just after the last event read.
    pub(crate) pos: usize,
}

impl<'a> Cursor<'a> {
    /// Start reading `input` within `bounds`.
    pub(crate) fn new(input: &'a Bytes, bounds: Bounds) -> Result<Self, XmlError> {
        if input.len() > bounds.max_size {
            return Err(XmlError::TooLarge {
                len: input.len(),
                max: bounds.max_size,
            });
        }
        let base = if input.starts_with(UTF8_BOM) {
            UTF8_BOM.len()
        } else {
            0
        };
        let body: &'a [u8] = input.get(base..).unwrap_or_default();
        let mut reader = NsReader::from_reader(body);
        {
            let config = reader.config_mut();
            config.expand_empty_elements = true;
            config.check_end_names = true;
            config.check_comments = true;
            config.trim_text(false);
        }
        reader
            .resolver_mut()
            .set_max_namespace_bindings(bounds.max_namespaces);
        Ok(Cursor {
            input,
            reader,
            base,
            bounds,
            elements: 0,
            depth: 0,
            pos: base,
        })
    }

    /// Read one event; map quick-xml's error to [`XmlError::Malformed`] at its position.
    pub(crate) fn read(&mut self) -> Result<Event<'a>, XmlError> {
        match self.reader.read_event() {
            Ok(ev) => {
                self.pos = self
                    .base
                    .saturating_add(usize::try_from(self.reader.buffer_position()).unwrap_or(0));
                Ok(ev)
            }
            Err(e) => {
                let at = usize::try_from(self.reader.error_position()).unwrap_or(0);
                let offset = self.base.saturating_add(at).max(self.pos);
                Err(match e {
                    quick_xml::Error::Namespace(
                        quick_xml::name::NamespaceError::TooManyBindings(max),
                    ) => XmlError::TooManyNamespaces { offset, max },
                    e => XmlError::Malformed {
                        offset,
                        reason: e.to_string(),
                    },
                })
            }
        }
    }

    /// Count one more element at `offset` and check the element and depth bounds.
    pub(crate) fn enter(&mut self, offset: usize) -> Result<(), XmlError> {
        self.elements = self.elements.saturating_add(1);
        if self.elements > self.bounds.max_elements {
            return Err(XmlError::TooManyElements {
                offset,
                max: self.bounds.max_elements,
            });
        }
        self.depth = self.depth.saturating_add(1);
        if self.depth > self.bounds.max_depth {
            return Err(XmlError::TooDeep {
                offset,
                max: self.bounds.max_depth,
            });
        }
        Ok(())
    }

    /// One element closed.
    pub(crate) fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// The text content of the element `element` we just entered, up to its end tag:
    /// character data, CDATA sections, predefined entities and character references, with
    /// XML 1.0 end-of-line handling (§2.11). A slice of the input when the text is one plain
    /// run; a copy only when unescaping changed something.
    pub(crate) fn text(&mut self, element: &'static str) -> Result<Bytes, XmlError> {
        let mut run: Option<(usize, usize)> = None;
        let mut owned: Option<String> = None;
        let first_at = self.pos;
        loop {
            let start = self.pos;
            let ev = self.read()?;
            let piece: Cow<'_, str> = match ev {
                Event::Text(t) => {
                    let content = t.xml10_content();
                    let end = self.pos;
                    if owned.is_none()
                        && run.is_none()
                        && matches!(content, Cow::Borrowed(_))
                        && self.input.get(start..end) == Some(content.as_bytes())
                    {
                        run = Some((start, end));
                        self.check_len(end.saturating_sub(start), element, start)?;
                        continue;
                    }
                    Cow::Owned(content.into_owned())
                }
                Event::CData(c) => Cow::Owned(c.xml10_content().into_owned()),
                Event::GeneralRef(r) => {
                    let resolved = r.resolve_char_ref().map_err(|e| XmlError::Malformed {
                        offset: start,
                        reason: e.to_string(),
                    })?;
                    match resolved {
                        // XML 1.0 §4.1 WFC Legal Character: a reference must name a `Char`.
                        Some(ch) if !is_xml_char(ch) => {
                            return Err(XmlError::Malformed {
                                offset: start,
                                reason: format!(
                                    "character reference &{}; is not an XML character",
                                    &*r
                                ),
                            });
                        }
                        Some(ch) => Cow::Owned(ch.to_string()),
                        None => match quick_xml::escape::resolve_predefined_entity(&r) {
                            Some(s) => Cow::Borrowed(s),
                            None => {
                                return Err(XmlError::UndefinedEntity {
                                    offset: start,
                                    name: r.to_string(),
                                });
                            }
                        },
                    }
                }
                Event::Comment(_) | Event::PI(_) => continue,
                Event::End(_) => {
                    self.leave();
                    break;
                }
                Event::Start(e) => {
                    return Err(XmlError::ChildNotAllowed {
                        offset: start,
                        name: e.name().as_ref().to_string(),
                        parent: element,
                    });
                }
                Event::DocType(_) => return Err(XmlError::Doctype { offset: start }),
                Event::Decl(_) | Event::Empty(_) => {
                    return Err(XmlError::Malformed {
                        offset: start,
                        reason: "unexpected markup".into(),
                    });
                }
                Event::Eof => {
                    return Err(XmlError::Malformed {
                        offset: start,
                        reason: format!("document ends inside <{element}>"),
                    });
                }
            };
            let buf = owned.get_or_insert_with(|| match run.take() {
                Some((a, b)) => {
                    String::from_utf8_lossy(self.input.get(a..b).unwrap_or_default()).into_owned()
                }
                None => String::new(),
            });
            buf.push_str(&piece);
            let len = buf.len();
            self.check_len(len, element, first_at)?;
        }
        Ok(match (owned, run) {
            (Some(s), _) => Bytes::from(s.into_bytes()),
            (None, Some((a, b))) => self.input.slice(a..b),
            (None, None) => Bytes::new(),
        })
    }

    fn check_len(&self, len: usize, element: &'static str, offset: usize) -> Result<(), XmlError> {
        if len > self.bounds.max_text {
            return Err(XmlError::TextTooLong {
                offset,
                element,
                max: self.bounds.max_text,
            });
        }
        Ok(())
    }
}

impl<'a> Doc<'a> {
    /// Start reading `input`, a document whose elements of interest live in `namespace` and
    /// are named in `names`.
    pub(crate) fn new(
        input: &'a Bytes,
        namespace: &'static str,
        names: &'static [&'static str],
        bounds: Bounds,
    ) -> Result<Self, XmlError> {
        Ok(Doc {
            input,
            cur: Cursor::new(input, bounds)?,
            namespace,
            names,
            bounds,
        })
    }

    fn read(&mut self) -> Result<Event<'a>, XmlError> {
        self.cur.read()
    }

    fn enter(&mut self, offset: usize) -> Result<(), XmlError> {
        self.cur.enter(offset)
    }

    fn leave(&mut self) {
        self.cur.leave()
    }

    fn classify(&self, name: QName<'_>) -> Class {
        match self.cur.reader.resolver().resolve_element(name).0 {
            ResolveResult::Bound(ns) if ns.0.eq_ignore_ascii_case(self.namespace) => Class::Ours,
            ResolveResult::Bound(_) | ResolveResult::Unbound => Class::Other,
            ResolveResult::Unknown(p) => Class::Undeclared(p),
        }
    }

    fn known(&self, local: &str) -> Option<&'static str> {
        self.names.iter().copied().find(|n| *n == local)
    }

    fn undeclared(offset: usize, prefix: &str) -> XmlError {
        XmlError::Malformed {
            offset,
            reason: format!("namespace prefix {prefix:?} is not declared"),
        }
    }

    /// Read the prolog (XML declaration, comments, processing instructions) and the root
    /// start tag, which must be `<expected>` in our namespace. Returns the root's offset.
    pub(crate) fn root(&mut self, expected: &'static str) -> Result<usize, XmlError> {
        let mut first = true;
        loop {
            let start = self.cur.pos;
            let ev = self.read()?;
            match ev {
                // XML 1.0 §2.8: the declaration, if any, comes first.
                Event::Decl(d) if first => {
                    if let Some(enc) = d.encoding() {
                        let enc = enc.map_err(|e| XmlError::Malformed {
                            offset: start,
                            reason: e.to_string(),
                        })?;
                        let ok = ["UTF-8", "UTF8", "US-ASCII"]
                            .iter()
                            .any(|e| enc.eq_ignore_ascii_case(e));
                        if !ok {
                            return Err(XmlError::Encoding {
                                offset: start,
                                encoding: enc.into_owned(),
                            });
                        }
                    }
                }
                Event::Decl(_) => {
                    return Err(XmlError::Malformed {
                        offset: start,
                        reason: "XML declaration not at the start of the document".into(),
                    });
                }
                Event::DocType(_) => return Err(XmlError::Doctype { offset: start }),
                Event::Comment(_) | Event::PI(_) => {}
                // Leniency: white space before the declaration (XML 1.0 §2.8 wants none) is
                // what a sloppy CPIM/MSRP wrapper leaves; it changes nothing.
                Event::Text(t) if t.bytes().all(is_xml_ws) => continue,
                Event::Start(e) => {
                    self.enter(start)?;
                    for a in e.attributes() {
                        a.map_err(|err| XmlError::Malformed {
                            offset: start,
                            reason: err.to_string(),
                        })?;
                    }
                    let local = e.local_name();
                    match self.classify(e.name()) {
                        Class::Ours if local.as_ref() == expected => return Ok(start),
                        Class::Undeclared(p) => return Err(Self::undeclared(start, &p)),
                        _ => {
                            let ns = match self.cur.reader.resolver().resolve_element(e.name()).0 {
                                ResolveResult::Bound(ns) => format!("namespace {}", ns.0),
                                _ => "no namespace".to_string(),
                            };
                            return Err(XmlError::WrongRoot {
                                offset: start,
                                found: format!("<{}> in {ns}", e.name().as_ref()),
                                expected,
                                namespace: self.namespace,
                            });
                        }
                    }
                }
                Event::Eof => return Err(XmlError::NoRoot { offset: start }),
                _ => {
                    return Err(XmlError::Malformed {
                        offset: start,
                        reason: "content before the root element".into(),
                    });
                }
            }
            first = false;
        }
    }

    /// The next child of the element `parent` we are in: a start of one of ours, an extension
    /// element, or the end of `parent`. White space, comments and processing instructions are
    /// skipped; other text is an error (the schemas define no mixed content).
    pub(crate) fn next(&mut self, parent: &'static str) -> Result<Item, XmlError> {
        loop {
            let start = self.cur.pos;
            let ev = self.read()?;
            match ev {
                Event::Start(e) => {
                    self.enter(start)?;
                    match self.classify(e.name()) {
                        Class::Ours => {
                            let local = e.local_name();
                            let Some(name) = self.known(local.as_ref()) else {
                                return Err(XmlError::UnknownElement {
                                    offset: start,
                                    name: local.as_ref().to_string(),
                                    namespace: self.namespace,
                                });
                            };
                            for a in e.attributes() {
                                a.map_err(|err| XmlError::Malformed {
                                    offset: start,
                                    reason: err.to_string(),
                                })?;
                            }
                            return Ok(Item::Start {
                                name,
                                offset: start,
                            });
                        }
                        Class::Undeclared(p) => return Err(Self::undeclared(start, &p)),
                        Class::Other => {
                            let name_len = e.name().as_ref().len();
                            let raw = self.capture(start, &e, name_len)?;
                            return Ok(Item::Extension { raw });
                        }
                    }
                }
                Event::End(_) => {
                    self.leave();
                    return Ok(Item::End { offset: start });
                }
                Event::Text(t) if t.bytes().all(is_xml_ws) => {}
                Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => {
                    return Err(XmlError::Text {
                        offset: start,
                        parent,
                    });
                }
                Event::Comment(_) | Event::PI(_) => {}
                Event::DocType(_) => return Err(XmlError::Doctype { offset: start }),
                Event::Decl(_) | Event::Empty(_) => {
                    return Err(XmlError::Malformed {
                        offset: start,
                        reason: "unexpected markup".into(),
                    });
                }
                Event::Eof => {
                    return Err(XmlError::Malformed {
                        offset: start,
                        reason: format!("document ends inside <{parent}>"),
                    });
                }
            }
        }
    }

    /// Consume the rest of an element of another namespace whose start tag (`top`, `name_len`
    /// bytes of name) began at `start`, and return it as self-contained raw XML.
    fn capture(
        &mut self,
        start: usize,
        top: &quick_xml::events::BytesStart<'a>,
        name_len: usize,
    ) -> Result<Bytes, XmlError> {
        let top_depth = self.cur.depth;
        // Prefixes declared inside the subtree, with the depth of the declaring element; and
        // prefixes used but declared above the subtree ("" is the default namespace).
        let mut declared: Vec<(usize, String)> = Vec::new();
        let mut needed: Vec<String> = Vec::new();
        self.scan_start(start, top, top_depth, &mut declared, &mut needed)?;
        while self.cur.depth >= top_depth {
            let at = self.cur.pos;
            let ev = self.read()?;
            match ev {
                Event::Start(e) => {
                    self.enter(at)?;
                    let depth = self.cur.depth;
                    self.scan_start(at, &e, depth, &mut declared, &mut needed)?;
                }
                Event::End(_) => {
                    let depth = self.cur.depth;
                    declared.retain(|(d, _)| *d < depth);
                    self.leave();
                }
                Event::Text(_)
                | Event::CData(_)
                | Event::Comment(_)
                | Event::PI(_)
                | Event::GeneralRef(_) => {}
                Event::DocType(_) => return Err(XmlError::Doctype { offset: at }),
                Event::Decl(_) | Event::Empty(_) => {
                    return Err(XmlError::Malformed {
                        offset: at,
                        reason: "unexpected markup".into(),
                    });
                }
                Event::Eof => {
                    return Err(XmlError::Malformed {
                        offset: at,
                        reason: format!("document ends inside <{}>", top.name().as_ref()),
                    });
                }
            }
        }
        let end = self.cur.pos;
        let raw = self
            .input
            .slice(start..end.max(start).min(self.input.len()));
        if needed.is_empty() {
            return Ok(raw);
        }
        // The resolver still holds the scope of the extension's own start tag (its End was
        // the last event), and that tag does not redeclare the needed prefixes: they resolve
        // to the ancestors' bindings.
        let mut decls = String::new();
        for p in &needed {
            let probe = if p.is_empty() {
                "x".to_string()
            } else {
                format!("{p}:x")
            };
            match self.cur.reader.resolver().resolve_element(QName(&probe)).0 {
                ResolveResult::Bound(ns) => {
                    let value = ns.0.replace('"', "&quot;").replace('<', "&lt;");
                    if p.is_empty() {
                        decls.push_str(&format!(" xmlns=\"{value}\""));
                    } else {
                        decls.push_str(&format!(" xmlns:{p}=\"{value}\""));
                    }
                }
                // No default namespace above: say so, because the element will be written
                // under a parent whose default namespace is ours.
                ResolveResult::Unbound => decls.push_str(" xmlns=\"\""),
                ResolveResult::Unknown(p) => return Err(Self::undeclared(start, &p)),
            }
        }
        let cut = name_len.saturating_add(1);
        let (head, tail) = raw.split_at_checked(cut).unwrap_or((raw.as_ref(), &[]));
        let mut out = Vec::with_capacity(raw.len().saturating_add(decls.len()));
        out.extend_from_slice(head);
        out.extend_from_slice(decls.as_bytes());
        out.extend_from_slice(tail);
        Ok(Bytes::from(out))
    }

    /// Record the namespace declarations and prefix uses of one start tag inside an extension.
    fn scan_start(
        &self,
        offset: usize,
        e: &quick_xml::events::BytesStart<'_>,
        depth: usize,
        declared: &mut Vec<(usize, String)>,
        needed: &mut Vec<String>,
    ) -> Result<(), XmlError> {
        use quick_xml::name::PrefixDeclaration;
        for a in e.attributes() {
            let a = a.map_err(|err| XmlError::Malformed {
                offset,
                reason: err.to_string(),
            })?;
            match a.key.as_namespace_binding() {
                Some(PrefixDeclaration::Default) => declared.push((depth, String::new())),
                Some(PrefixDeclaration::Named(p)) => declared.push((depth, p.to_string())),
                None => {
                    if let Some(p) = a.key.prefix() {
                        let p = p.into_inner();
                        if p != "xml" {
                            Self::use_prefix(Some(p.to_string()), declared, needed);
                            self.check_needed(offset, needed)?;
                        }
                    }
                }
            }
        }
        let element_prefix = e
            .name()
            .prefix()
            .map_or_else(String::new, |p| p.into_inner().to_string());
        if element_prefix != "xml" {
            Self::use_prefix(Some(element_prefix), declared, needed);
        }
        self.check_needed(offset, needed)
    }

    /// Every prefix an extension borrows from its ancestors must be bound there, and at most
    /// `max_namespaces` bindings (plus "no default namespace") are in scope: more distinct
    /// prefixes cannot all resolve. Failing early keeps the bookkeeping linear.
    fn check_needed(&self, offset: usize, needed: &[String]) -> Result<(), XmlError> {
        if needed.len() > self.bounds.max_namespaces.saturating_add(1) {
            return Err(XmlError::TooManyNamespaces {
                offset,
                max: self.bounds.max_namespaces,
            });
        }
        Ok(())
    }

    fn use_prefix(p: Option<String>, declared: &[(usize, String)], needed: &mut Vec<String>) {
        if let Some(p) = p
            && !declared.iter().any(|(_, d)| *d == p)
            && !needed.contains(&p)
        {
            needed.push(p);
        }
    }

    /// The text content of the element `element` we just entered ([`Cursor::text`]).
    pub(crate) fn text(&mut self, element: &'static str) -> Result<Bytes, XmlError> {
        self.cur.text(element)
    }

    /// Consume an element that must be empty (white space allowed), like `<delivered/>`.
    pub(crate) fn empty(&mut self, element: &'static str) -> Result<(), XmlError> {
        let at = self.cur.pos;
        let text = self.text(element)?;
        if text.iter().all(|b| is_xml_ws(*b)) {
            Ok(())
        } else {
            Err(XmlError::Text {
                offset: at,
                parent: element,
            })
        }
    }

    /// After the root's end tag: only white space, comments and processing instructions
    /// may follow (XML 1.0 §2.1 `Misc*`).
    pub(crate) fn finish(&mut self) -> Result<(), XmlError> {
        loop {
            let start = self.cur.pos;
            match self.read()? {
                Event::Eof => return Ok(()),
                Event::Comment(_) | Event::PI(_) => {}
                Event::Text(t) if t.bytes().all(is_xml_ws) => {}
                _ => return Err(XmlError::TrailingContent { offset: start }),
            }
        }
    }
}

/// Append `text` to `out` escaped for XML character data: `&`, `<`, `>` as entities and CR
/// as a character reference so that it survives end-of-line handling (XML 1.0 §2.11).
pub(crate) fn push_escaped(out: &mut Vec<u8>, text: &[u8]) {
    let mut rest = text;
    while let Some(i) = rest
        .iter()
        .position(|b| matches!(b, b'&' | b'<' | b'>' | b'\r'))
    {
        let (plain, tail) = rest.split_at(i);
        out.extend_from_slice(plain);
        let (special, tail) = tail.split_first().map_or((0, tail), |(c, t)| (*c, t));
        out.extend_from_slice(match special {
            b'&' => b"&amp;".as_slice(),
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            _ => b"&#13;",
        });
        rest = tail;
    }
    out.extend_from_slice(rest);
}

/// Append `<name>escaped text</name>` and a line break, indented by `indent` spaces.
pub(crate) fn push_leaf(out: &mut Vec<u8>, indent: usize, name: &str, text: &[u8]) {
    push_indent(out, indent);
    out.push(b'<');
    out.extend_from_slice(name.as_bytes());
    out.push(b'>');
    push_escaped(out, text);
    out.extend_from_slice(b"</");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b">\n");
}

pub(crate) fn push_indent(out: &mut Vec<u8>, indent: usize) {
    out.extend(std::iter::repeat_n(b' ', indent));
}

/// The XML declaration every canonical body starts with.
pub(crate) const DECLARATION: &[u8] = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &str = "urn:example:ours";
    const NAMES: &[&str] = &["root", "leaf"];
    const BOUNDS: Bounds = Bounds {
        max_size: 4096,
        max_elements: 16,
        max_depth: 4,
        max_text: 64,
        max_namespaces: 8,
    };

    fn walk(xml: &str) -> Result<Vec<String>, XmlError> {
        let input = Bytes::copy_from_slice(xml.as_bytes());
        let mut doc = Doc::new(&input, NS, NAMES, BOUNDS)?;
        doc.root("root")?;
        let mut out = Vec::new();
        loop {
            match doc.next("root")? {
                Item::Start { name, .. } => {
                    let t = doc.text(name)?;
                    out.push(format!("{name}={}", String::from_utf8_lossy(&t)));
                }
                Item::Extension { raw } => {
                    out.push(format!("ext={}", String::from_utf8_lossy(&raw)))
                }
                Item::End { .. } => break,
            }
        }
        doc.finish()?;
        Ok(out)
    }

    #[test]
    fn text_is_a_slice_unless_unescaped() {
        let xml = "<root xmlns='urn:example:ours'><leaf>abc</leaf></root>";
        let input = Bytes::from_static(xml.as_bytes());
        let mut doc = Doc::new(&input, NS, NAMES, BOUNDS).unwrap();
        doc.root("root").unwrap();
        assert!(matches!(
            doc.next("root").unwrap(),
            Item::Start { name: "leaf", .. }
        ));
        let t = doc.text("leaf").unwrap();
        assert_eq!(&t[..], b"abc");
        // Same memory as the input: not copied.
        assert_eq!(t.as_ptr(), input[xml.find("abc").unwrap()..].as_ptr());
        assert_eq!(
            walk("<root xmlns='urn:example:ours'><leaf>a&amp;b&#x41;<![CDATA[<c>]]>\r\n</leaf></root>")
                .unwrap(),
            vec!["leaf=a&bA<c>\n"]
        );
    }

    #[test]
    fn extension_gets_the_declarations_it_needs() {
        let got = walk(
            "<o:root xmlns:o='urn:example:ours' xmlns:x='urn:x' xmlns='urn:d'>\
             <x:a b='1'><c/></x:a><x:e xmlns:x='urn:y'/></o:root>",
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                "ext=<x:a xmlns:x=\"urn:x\" xmlns=\"urn:d\" b='1'><c/></x:a>",
                "ext=<x:e xmlns:x='urn:y'/>"
            ]
        );
        // An unprefixed element with no default namespace above says so.
        let got = walk("<o:root xmlns:o='urn:example:ours'><a/></o:root>").unwrap();
        assert_eq!(got, vec!["ext=<a xmlns=\"\"/>"]);
    }

    #[test]
    fn namespace_case_and_prefix_are_aliases() {
        assert!(walk("<p:root xmlns:p='URN:EXAMPLE:OURS'><p:leaf>1</p:leaf></p:root>").is_ok());
    }

    #[test]
    fn refusals() {
        let err =
            walk("<!DOCTYPE root [<!ENTITY x 'y'>]><root xmlns='urn:example:ours'/>").unwrap_err();
        assert!(matches!(err, XmlError::Doctype { offset: 0 }));
        let err = walk("<root xmlns='urn:example:ours'><leaf>&x;</leaf></root>").unwrap_err();
        assert!(matches!(err, XmlError::UndefinedEntity { .. }), "{err:?}");
        let err = walk("<root xmlns='urn:other'/>").unwrap_err();
        assert_eq!(err.answer(), Answer::Status(415));
        let err = walk("<?xml version='1.0' encoding='ISO-8859-1'?><root/>").unwrap_err();
        assert_eq!(err.answer(), Answer::Status(415));
        let err = walk("<root xmlns='urn:example:ours'><bad/></root>").unwrap_err();
        assert!(matches!(err, XmlError::UnknownElement { .. }));
        let err = walk("<root xmlns='urn:example:ours'>text</root>").unwrap_err();
        assert!(matches!(err, XmlError::Text { .. }));
        let err = walk("<root xmlns='urn:example:ours'/><root/>").unwrap_err();
        assert!(matches!(err, XmlError::TrailingContent { .. }));
        let err = walk("<root xmlns='urn:example:ours'><leaf>a</root>").unwrap_err();
        assert!(matches!(err, XmlError::Malformed { .. }));
        let err = walk("<root xmlns='urn:example:ours'><q:leaf/></root>").unwrap_err();
        assert!(matches!(err, XmlError::Malformed { .. }));
        let err = walk("<root xmlns='urn:example:ours'><x xmlns='u'><a><b><c/></b></a></x></root>")
            .unwrap_err();
        assert!(matches!(err, XmlError::TooDeep { .. }));
        let long = format!(
            "<root xmlns='urn:example:ours'><leaf>{}</leaf></root>",
            "a".repeat(65)
        );
        assert!(matches!(
            walk(&long).unwrap_err(),
            XmlError::TextTooLong { .. }
        ));
        let many = format!(
            "<root xmlns='urn:example:ours'>{}</root>",
            "<x xmlns='u'/>".repeat(16)
        );
        assert!(matches!(
            walk(&many).unwrap_err(),
            XmlError::TooManyElements { .. }
        ));
        assert!(matches!(walk("").unwrap_err(), XmlError::NoRoot { .. }));
        assert!(walk("\r\n <?xml version='1.0'?><root xmlns='urn:example:ours'/>").is_ok());
        let err = walk("<!-- c --><?xml version='1.0'?><root xmlns='urn:example:ours'/>");
        assert!(matches!(err, Err(XmlError::Malformed { .. })), "{err:?}");
        let err = walk("<root xmlns='urn:example:ours'><leaf>&#1;</leaf></root>").unwrap_err();
        assert!(matches!(err, XmlError::Malformed { .. }), "{err:?}");
        let err = walk("<root xmlns='urn:example:ours' a='1' a='2'/>").unwrap_err();
        assert!(matches!(err, XmlError::Malformed { .. }), "{err:?}");
        let ns: String = (0..9).map(|i| format!(" xmlns:p{i}='u{i}'")).collect();
        let err = walk(&format!("<root xmlns='urn:example:ours'{ns}/>")).unwrap_err();
        assert!(matches!(err, XmlError::TooManyNamespaces { .. }), "{err:?}");
        let prefixes: String = (0..20).map(|i| format!(" p{i}:a=''")).collect();
        let err = walk(&format!(
            "<root xmlns='urn:example:ours'><x:y xmlns:x='u'{prefixes}/></root>"
        ))
        .unwrap_err();
        assert!(matches!(err, XmlError::TooManyNamespaces { .. }), "{err:?}");
        assert!(matches!(
            walk("<root xmlns='urn:example:ours'>").unwrap_err(),
            XmlError::Malformed { .. }
        ));
    }

    #[test]
    fn escaping_round_trips() {
        let mut out = Vec::new();
        push_escaped(&mut out, b"a<b>&c\r\nd");
        assert_eq!(out, b"a&lt;b&gt;&amp;c&#13;\nd");
    }
}
