//! JSON rendering of a parsed isComposing body for `cpm-iwf inspect iscomposing`.

use bytes::Bytes;
use serde_json::{Value, json};

use super::{InspectError, text_value};
use crate::wire::iscomposing;

/// Parse `input` as `application/im-iscomposing+xml` and render it: the root and its
/// namespace, the typed fields (with the receiver's active-state timeout, RFC 3994 §4) and
/// every extension element as its raw XML string.
pub fn render(input: Bytes) -> Result<Value, InspectError> {
    let parsed =
        iscomposing::parse(input.clone()).map_err(|e| InspectError::from_wire(&e, &input))?;
    Ok(json!({
        "root": "isComposing",
        "namespace": iscomposing::NAMESPACE,
        "state": parsed.state.as_str(),
        "lastactive": parsed.lastactive.as_deref().map_or(Value::Null, text_value),
        "contenttype": parsed.contenttype.as_deref().map_or(Value::Null, text_value),
        "refresh": parsed.refresh,
        "active_timeout_secs": parsed.active_timeout_secs(),
        "extensions": Value::Array(parsed.extensions.iter().map(|b| text_value(b)).collect()),
    }))
}
