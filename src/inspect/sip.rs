//! JSON rendering of a parsed sip message for `cpm-iwf inspect sip`.

use bytes::Bytes;
use serde_json::Value;

use super::InspectError;

/// Parse `input` and render it. Placeholder until the sip codec lands.
pub fn render(input: Bytes) -> Result<Value, InspectError> {
    let _ = input;
    Err(InspectError("sip: codec not built yet".into()))
}
