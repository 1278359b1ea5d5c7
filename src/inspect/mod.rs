//! `cpm-iwf inspect`: parse one message with a wire codec and render it as JSON.
//!
//! Each format has a `render` function in its own submodule. Bodies whose content type names
//! another format we know are decoded too ([`body_json`]), so that a SIP MESSAGE carrying CPIM
//! carrying an IMDN shows all three layers.

use bytes::Bytes;
use serde_json::{Value, json};

use crate::wire::{WireError, text};

mod cpim;
mod imdn;
mod iscomposing;
mod msrp;
mod sdp;
mod sip;

/// The formats `inspect` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Sip,
    Sdp,
    Msrp,
    Cpim,
    Imdn,
    Iscomposing,
}

/// A failure to inspect: one line that says what is wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InspectError(pub String);

impl InspectError {
    /// Describe a codec error with its position in `input` (line, column and byte offset).
    pub fn from_wire(err: &dyn WireError, input: &[u8]) -> Self {
        match err.offset() {
            Some(off) => {
                let (line, col) = text::line_col(input, off);
                InspectError(format!("{err} (line {line}, column {col}, byte {off})"))
            }
            None => InspectError(err.to_string()),
        }
    }
}

/// Parse `input` as `format` and render it as JSON.
pub fn inspect(format: Format, input: Bytes) -> Result<Value, InspectError> {
    match format {
        Format::Sip => sip::render(input),
        Format::Sdp => sdp::render(input),
        Format::Msrp => msrp::render(input),
        Format::Cpim => cpim::render(input),
        Format::Imdn => imdn::render(input),
        Format::Iscomposing => iscomposing::render(input),
    }
}

/// Which known format a MIME content type names, if any. Parameters (`;charset=...`) and case
/// are ignored (RFC 2045 §5.1).
pub fn format_for_content_type(content_type: &[u8]) -> Option<Format> {
    let is = |name: &str| text::media_type_is(content_type, name);
    if is("message/cpim") {
        Some(Format::Cpim)
    } else if is("message/imdn+xml") {
        Some(Format::Imdn)
    } else if is("application/im-iscomposing+xml") {
        Some(Format::Iscomposing)
    } else if is("application/sdp") {
        Some(Format::Sdp)
    } else if is("message/sip") {
        Some(Format::Sip)
    } else {
        None
    }
}

/// Describe a body: its length and content type, and, when the content type names a format we
/// know, its decoded form under `"decoded"` (or the decoding error under `"error"`).
pub fn body_json(content_type: Option<&[u8]>, body: Bytes) -> Value {
    let mut out = json!({
        "length": body.len(),
        "content_type": content_type.map(|c| String::from_utf8_lossy(c).into_owned()),
    });
    if let Some(format) = content_type.and_then(format_for_content_type) {
        match inspect(format, body) {
            Ok(v) => out["decoded"] = v,
            Err(e) => out["error"] = Value::String(e.0),
        }
    }
    out
}

/// Bytes as a JSON string (lossy for invalid UTF-8, which the codecs keep as bytes).
pub fn text_value(b: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(b).into_owned())
}
