//! JSON rendering of a parsed iscomposing message for `cpm-iwf inspect iscomposing`.

use bytes::Bytes;
use serde_json::Value;

use super::InspectError;

/// Parse `input` and render it. Placeholder until the iscomposing codec lands.
pub fn render(input: Bytes) -> Result<Value, InspectError> {
    let _ = input;
    Err(InspectError("iscomposing: codec not built yet".into()))
}
